#!/usr/bin/env python3
"""Writes a GPT with one Linux partition onto a disk image (sgdisk and
sfdisk are not on every machine; the format is a page of the UEFI spec).

    gpt.py DISK FIRST_LBA SECTORS PARTUUID

The disk's size must leave room for the backup table (33 sectors) after
the partition. Sectors are 512 bytes.
"""
import struct
import sys
import uuid
import zlib

SECTOR = 512
LINUX_FS = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")


def header(my_lba, other_lba, entries_lba, last_usable, disk_guid, entries_crc):
    fields = [
        b"EFI PART", 0x00010000, 92, 0, 0, my_lba, other_lba, 34, last_usable,
        disk_guid.bytes_le, entries_lba, 128, 128, entries_crc,
    ]
    fmt = "<8sIIIIQQQQ16sQIII"
    raw = struct.pack(fmt, *fields)
    fields[3] = zlib.crc32(raw)
    return struct.pack(fmt, *fields).ljust(SECTOR, b"\0")


def main():
    path, first, count, partuuid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    with open(path, "r+b") as f:
        f.seek(0, 2)
        sectors = f.tell() // SECTOR
        last = first + count - 1
        last_usable = sectors - 34
        if last > last_usable:
            sys.exit(f"gpt.py: the partition ends at {last}, past the last usable sector {last_usable}")
        entry = struct.pack("<16s16sQQQ72s", LINUX_FS.bytes_le, uuid.UUID(partuuid).bytes_le,
                            first, last, 0, "root".encode("utf-16-le"))
        entries = entry.ljust(128 * 128, b"\0")
        crc = zlib.crc32(entries)
        disk_guid = uuid.uuid4()
        mbr = bytearray(SECTOR)
        mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\0\x02\0", 0xEE, b"\xff\xff\xff", 1,
                                   min(sectors - 1, 0xFFFFFFFF))
        mbr[510:512] = b"\x55\xaa"
        for lba, data in [
            (0, bytes(mbr)),
            (1, header(1, sectors - 1, 2, last_usable, disk_guid, crc)),
            (2, entries),
            (sectors - 33, entries),
            (sectors - 1, header(sectors - 1, 1, sectors - 33, last_usable, disk_guid, crc)),
        ]:
            f.seek(lba * SECTOR)
            f.write(data)


main()
