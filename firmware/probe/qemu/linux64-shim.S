/*
 * Test-only loader for the probe's Linux 64-bit entry, under QEMU.
 *
 * QEMU's -kernel can only enter an ELF through PVH, so this shim is the
 * PVH kernel: it turns hvm_start_info into a boot_params zero page, builds
 * what a rust-vmm VMM (Firecracker layout) builds -- GDT at 0x500, zero
 * page at 0x7000, 1 GiB identity map at 0x9000..0xBFFF, command line at
 * 0x20000, stack at 0x8ff0 -- switches to long mode and jumps to the
 * probe's e_entry (PROBE_ENTRY, given at link time) with RSI = zero page.
 * The probe ELF itself is loaded by QEMU's generic loader device.
 *
 * Its GDT deliberately uses other selectors than the probe's (code 0x08)
 * and maps only 1 GiB, to catch a probe that leans on either.
 */
    .set GDT, 0x500
    .set BOOT_PARAMS, 0x7000
    .set STACK_TOP, 0x8ff0
    .set PML4, 0x9000
    .set PDPT, 0xA000
    .set PD, 0xB000
    .set CMDLINE, 0x20000
    .set MAX_E820, 128

    .section .note.pvh, "a", @note
    .balign 4
    .long 4, 8, 18                  /* namesz, descsz, PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad shim_start
    .balign 4

    .text
    .code32
    .globl shim_start
shim_start:
    cli
    cld
    /* Zero the zero page and the page tables. */
    xor %eax, %eax
    mov $BOOT_PARAMS, %edi
    mov $0x1000, %ecx
    rep stosb
    mov $PML4, %edi
    mov $0x3000, %ecx
    rep stosb

    /* e820: 24-byte PVH entries -> packed 20-byte zero-page entries. */
    mov 40(%ebx), %esi              /* memmap_paddr (below 4 GiB) */
    mov 48(%ebx), %ecx              /* memmap_entries */
    cmp $MAX_E820, %ecx
    jbe 1f
    mov $MAX_E820, %ecx
1:  mov %cl, BOOT_PARAMS + 0x1e8
    mov $BOOT_PARAMS + 0x2d0, %edi
2:  test %ecx, %ecx
    jz 3f
    movsl                           /* addr, size, type: 5 dwords */
    movsl
    movsl
    movsl
    movsl
    add $4, %esi                    /* skip reserved */
    dec %ecx
    jmp 2b
3:
    /* Command line, copied to where a VMM would put it. */
    mov 24(%ebx), %esi              /* cmdline_paddr */
    test %esi, %esi
    jz 5f
    mov $CMDLINE, %edi
4:  lodsb
    stosb
    test %al, %al
    jnz 4b
    movl $CMDLINE, BOOT_PARAMS + 0x228
5:
    movw $0xAA55, BOOT_PARAMS + 0x1fe   /* boot_flag */
    movl $0x53726448, BOOT_PARAMS + 0x202   /* "HdrS" */

    /* 1 GiB identity map with 2 MiB pages. */
    movl $PDPT + 3, PML4
    movl $PD + 3, PDPT
    xor %ecx, %ecx
6:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, PD(,%ecx,8)
    inc %ecx
    cmp $512, %ecx
    jb 6b

    /* GDT in low memory: null, 64-bit code (0x08), data (0x10). */
    movl $0, GDT
    movl $0, GDT + 4
    movl $0x0000FFFF, GDT + 8
    movl $0x00AF9B00, GDT + 12
    movl $0x0000FFFF, GDT + 16
    movl $0x00CF9300, GDT + 20
    lgdt shim_gdt_desc

    mov %cr4, %eax
    or $0x20, %eax                  /* PAE */
    mov %eax, %cr4
    mov $PML4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx           /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax            /* PG | PE */
    mov %eax, %cr0
    ljmp $0x08, $shim_long

    .code64
shim_long:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $STACK_TOP, %rsp
    mov $BOOT_PARAMS, %rsi
    /* Registers other than RSI carry nothing under the protocol. */
    mov $0xdeadbeef, %ebx
    mov $0xdeadbeef, %edi
    mov $PROBE_ENTRY, %eax
    jmp *%rax

    .data
    .balign 8
shim_gdt_desc:
    .word 3 * 8 - 1
    .long GDT
