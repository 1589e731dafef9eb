//! DISCARD / WRITE_ZEROES ranges, indirect descriptor tables and
//! EVENT_IDX, each with the hostile variants a guest could send.

use super::*;

const INDIRECT: u16 = 4;
const RANGES: u64 = 0x6000;
const TABLE: u64 = 0x8000;

/// Writes `ranges` (sector, count, flags) as virtio_blk_discard_write_zeroes.
fn put_ranges(d: &Driver, ranges: &[(u64, u32, u32)]) -> u32 {
    for (i, &(sector, count, flags)) in ranges.iter().enumerate() {
        let at = RANGES + i as u64 * 16;
        d.mem.write_obj(sector, GuestAddress(at)).unwrap();
        d.mem.write_obj(count, GuestAddress(at + 8)).unwrap();
        d.mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
    }
    ranges.len() as u32 * 16
}

#[test]
fn write_zeroes_and_discard_clear_their_ranges() {
    let disk = TempDisk::new("zeroes", &[0xa5u8; 8192]);
    let mut d = Driver::new();
    let (mut s, _) = serve(&d, &disk, false);
    let len = put_ranges(&d, &[(1, 2, 0), (6, 1, 1)]);
    d.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[(RANGES, len, 0)]);
    s.process();
    assert_eq!(d.status(), VIRTIO_BLK_S_OK);
    let len = put_ranges(&d, &[(12, 4, 0)]);
    d.request(VIRTIO_BLK_T_DISCARD, 0, &[(RANGES, len, 0)]);
    s.process();
    assert_eq!(d.status(), VIRTIO_BLK_S_OK);
    let bytes = disk.contents();
    for (sector, chunk) in bytes.chunks(512).enumerate() {
        let zero = matches!(sector, 1 | 2 | 6 | 12..=15);
        let want = if zero { 0 } else { 0xa5 };
        assert!(chunk.iter().all(|&b| b == want), "sector {sector}");
    }
}

#[test]
fn hostile_ranges_fail_and_change_nothing() {
    let disk = TempDisk::new("bad-ranges", &[0x3cu8; 4096]);
    type RangeCase = (u32, &'static [(u64, u32, u32)], u8);
    let cases: &[RangeCase] = &[
        (VIRTIO_BLK_T_WRITE_ZEROES, &[(7, 2, 0)], VIRTIO_BLK_S_IOERR),
        (VIRTIO_BLK_T_WRITE_ZEROES, &[(0, 0, 0)], VIRTIO_BLK_S_IOERR),
        (
            VIRTIO_BLK_T_WRITE_ZEROES,
            &[(u64::MAX / 2, 1, 0)],
            VIRTIO_BLK_S_IOERR,
        ),
        (VIRTIO_BLK_T_WRITE_ZEROES, &[(0, 1, 2)], VIRTIO_BLK_S_UNSUPP),
        (VIRTIO_BLK_T_DISCARD, &[(0, 1, 1)], VIRTIO_BLK_S_UNSUPP),
        // A good range then a bad one: nothing is done.
        (
            VIRTIO_BLK_T_DISCARD,
            &[(0, 1, 0), (0, u32::MAX, 0)],
            VIRTIO_BLK_S_IOERR,
        ),
    ];
    for (n, &(kind, ranges, want)) in cases.iter().enumerate() {
        let mut d = Driver::new();
        let (mut s, _) = serve(&d, &disk, false);
        let len = put_ranges(&d, ranges);
        d.request(kind, 0, &[(RANGES, len, 0)]);
        s.process();
        assert_eq!(d.status(), want, "case {n}");
    }
    // Malformed buffers: a length that is not whole ranges, a device-writable
    // buffer, too many ranges, none at all.
    let too_many = (MAX_RANGES + 1) * 16;
    for (n, data) in [
        (RANGES, 15, 0),
        (RANGES, 16, W),
        (RANGES, too_many, 0),
        (RANGES, 0, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let mut d = Driver::new();
        let (mut s, _) = serve(&d, &disk, false);
        put_ranges(&d, &[(0, 1, 0)]);
        d.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[data]);
        s.process();
        assert_eq!(d.status(), VIRTIO_BLK_S_IOERR, "buffer case {n}");
    }
    let mut d = Driver::new();
    let (mut s, _) = serve(&d, &disk, true);
    let len = put_ranges(&d, &[(0, 1, 0)]);
    d.request(VIRTIO_BLK_T_DISCARD, 0, &[(RANGES, len, 0)]);
    s.process();
    assert_eq!(d.status(), VIRTIO_BLK_S_IOERR, "read-only disk");
    assert_eq!(disk.contents(), vec![0x3cu8; 4096]);
}

/// Writes indirect table entries at TABLE.
fn put_table(d: &Driver, entries: &[(u64, u32, u16, u16)]) {
    for (i, &(addr, len, flags, next)) in entries.iter().enumerate() {
        let at = TABLE + i as u64 * 16;
        d.mem.write_obj(addr, GuestAddress(at)).unwrap();
        d.mem.write_obj(len, GuestAddress(at + 8)).unwrap();
        d.mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
        d.mem.write_obj(next, GuestAddress(at + 14)).unwrap();
    }
}

/// Makes one descriptor pointing at an indirect table available.
fn push_indirect(d: &mut Driver, addr: u64, len: u32) {
    let head = d.next_desc;
    d.write_desc(head, addr, len, INDIRECT, 0);
    d.next_desc = (head + 1) % QSIZE;
    d.publish(head);
}

#[test]
fn indirect_tables_are_served() {
    let disk = TempDisk::new("indirect", &[0u8; 4096]);
    let mut d = Driver::new();
    let (mut s, _) = serve(&d, &disk, false);
    d.mem
        .write_obj(VIRTIO_BLK_T_OUT, GuestAddress(HDR))
        .unwrap();
    d.mem.write_obj(1u64, GuestAddress(HDR + 8)).unwrap();
    d.mem
        .write_slice(&[0x77u8; 1024], GuestAddress(DATA))
        .unwrap();
    put_table(
        &d,
        &[
            (HDR, 16, NEXT, 1),
            (DATA, 512, NEXT, 2),
            (DATA + 512, 512, NEXT, 3),
            (STATUS, 1, W, 0),
        ],
    );
    push_indirect(&mut d, TABLE, 64);
    assert_eq!(s.process(), 1);
    assert_eq!(d.status(), VIRTIO_BLK_S_OK);
    assert_eq!(&disk.contents()[512..1536], &[0x77u8; 1024][..]);
}

#[test]
fn hostile_indirect_tables_complete_empty_and_the_queue_goes_on() {
    let disk = TempDisk::new("bad-indirect", &[0u8; 4096]);
    let good: &[(u64, u32, u16, u16)] = &[
        (HDR, 16, NEXT, 1),
        (DATA, 512, W | NEXT, 2),
        (STATUS, 1, W, 0),
    ];
    // (table entries, table address, table length)
    type IndirectCase = (&'static [(u64, u32, u16, u16)], u64, u32);
    let looped: &[(u64, u32, u16, u16)] = &[(HDR, 16, NEXT, 1), (DATA, 512, W | NEXT, 0)];
    let nested: &[(u64, u32, u16, u16)] = &[(HDR, 16, NEXT, 1), (TABLE, 48, INDIRECT, 0)];
    let out_of_table: &[(u64, u32, u16, u16)] = &[(HDR, 16, NEXT, 9)];
    let cases: &[IndirectCase] = &[
        (good, TABLE, 47),         // not whole descriptors
        (good, TABLE, 0),          // empty table
        (good, MEM_SIZE - 16, 48), // runs past guest memory
        (good, u64::MAX - 8, 48),  // wraps around
        (looped, TABLE, 32),       // next loops inside the table
        (nested, TABLE, 32),       // an indirect inside an indirect
        (out_of_table, TABLE, 16), // next beyond the table
    ];
    for (n, &(entries, addr, len)) in cases.iter().enumerate() {
        let mut d = Driver::new();
        let (mut s, _) = serve(&d, &disk, false);
        d.mem.write_obj(VIRTIO_BLK_T_IN, GuestAddress(HDR)).unwrap();
        d.mem.write_obj(0u64, GuestAddress(HDR + 8)).unwrap();
        d.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        put_table(&d, entries);
        push_indirect(&mut d, addr, len);
        s.process();
        assert_ne!(d.used_idx(), 0, "case {n}: not completed");
        assert_ne!(d.status(), VIRTIO_BLK_S_OK, "case {n}: served");
        d.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, W)]);
        s.process();
        assert_eq!(d.status(), VIRTIO_BLK_S_OK, "case {n}: queue still works");
    }
}

/// used_event sits after the avail ring; avail_event after the used ring.
fn used_event_addr() -> GuestAddress {
    GuestAddress(AVAIL + 4 + 2 * u64::from(QSIZE))
}
fn avail_event_addr() -> GuestAddress {
    GuestAddress(USED + 4 + 8 * u64::from(QSIZE))
}

#[test]
fn event_idx_suppresses_interrupts_until_used_event() {
    let disk = TempDisk::new("event-idx", &[0u8; 4096]);
    let mut d = Driver::new();
    let (mut s, irq) = serve(&d, &disk, false);
    s.queue.set_event_idx(true);
    // The driver wants an interrupt only once used idx passes 2.
    d.mem.write_obj(2u16, used_event_addr()).unwrap();
    d.request(VIRTIO_BLK_T_FLUSH, 0, &[]);
    s.process();
    assert!(irq.read().is_err(), "interrupted before used_event");
    // The device asks to be notified at the next request it has not seen.
    assert_eq!(d.mem.read_obj::<u16>(avail_event_addr()).unwrap(), 1);
    d.request(VIRTIO_BLK_T_FLUSH, 0, &[]);
    s.process();
    assert!(irq.read().is_err(), "interrupted before used_event");
    d.request(VIRTIO_BLK_T_FLUSH, 0, &[]);
    s.process();
    assert_eq!(
        irq.read().unwrap(),
        1,
        "no interrupt once used idx passed used_event"
    );
    assert_eq!(d.used_idx(), 3);
    assert_eq!(d.mem.read_obj::<u16>(avail_event_addr()).unwrap(), 3);
}
