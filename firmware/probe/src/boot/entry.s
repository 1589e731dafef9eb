# CPU mode switching for the probe: both boot entries (PVH and Linux 64-bit)
# and the 32-bit/64-bit half of the AP start path. AT&T syntax; assembled by
# boot/mod.rs, which supplies the constants in braces.
#
# Selectors of the probe's GDT, used by every path below:
#   0x08  32-bit flat code     0x10  flat data     0x18  64-bit code

# Turn on long mode from 32-bit protected mode with paging off, using the
# probe's own page tables (paging.rs; the first 4 GiB must be mapped). The
# caller far-jumps to 64-bit code right after. Clobbers eax, ecx, edx.
.macro PROBE_ENTER_LONG_MODE
    mov %cr4, %eax
    or $0x20, %eax                      # CR4.PAE: long mode needs PAE tables
    mov %eax, %cr4
    mov $PROBE_PAGE_TABLES, %eax        # PML4 is the first page of the block
    mov %eax, %cr3
    mov $0xC0000080, %ecx               # IA32_EFER: write LME only, no read
    mov $0x100, %eax
    xor %edx, %edx
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax                # PG | PE: activates long mode
    mov %eax, %cr0
.endm

.macro PROBE_LOAD_DATA_SEGMENTS
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
.endm

    .section .text.entry, "ax"

# ---------------------------------------------------------------------------
# PVH entry: 32-bit protected mode, paging off, EBX = hvm_start_info.
# Nothing may be written to memory before .bss is zeroed except .bss itself,
# and the start_info pointer is kept in ESI (untouched by everything below)
# until pvh_main receives it.
    .code32
    .globl pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi
    lgdt probe_gdt_desc                 # 32-bit form reads a 32-bit base
    ljmpl $0x08, $.Lpvh_flat
.Lpvh_flat:
    PROBE_LOAD_DATA_SEGMENTS

    # The loader is not trusted to have zero-filled .bss.
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx                        # bss is page aligned: whole dwords,
    xor %eax, %eax                      # 4x fewer (possibly emulated) steps
    rep stosl

    # Identity map 0..4 GiB with 2 MiB pages so that start_info, wherever
    # it is below 4 GiB, and the probe are reachable. paging.rs rebuilds the
    # same layout (plus memory above 4 GiB) once the memory map is known.
    mov $PROBE_PAGE_TABLES, %edi        # PML4 and PDPT start empty (.noinit)
    mov $2048, %ecx
    xor %eax, %eax
    rep stosl
    mov $(PROBE_PAGE_TABLES + 0x1000 + 0x3), %eax   # PDPT, present|writable
    mov %eax, PROBE_PAGE_TABLES                     # PML4[0]
    mov $(PROBE_PAGE_TABLES + 0x2000 + 0x3), %eax   # first PD
    xor %ecx, %ecx
.Lpvh_pdpt:
    mov %eax, PROBE_PAGE_TABLES+0x1000(,%ecx,8)
    add $0x1000, %eax
    inc %ecx
    cmp $4, %ecx
    jb .Lpvh_pdpt
    xor %ecx, %ecx
.Lpvh_pd:
    mov %ecx, %eax
    shl $21, %eax                       # 2 MiB frame; high dword stays 0
    or $0x83, %eax                      # present|writable|page size
    mov %eax, PROBE_PAGE_TABLES+0x2000(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jb .Lpvh_pd

    PROBE_ENTER_LONG_MODE
    ljmpl $0x18, $.Lpvh_long

    .code64
.Lpvh_long:
    PROBE_LOAD_DATA_SEGMENTS
    lea probe_bsp_stack_top(%rip), %rsp
    mov %esi, %edi                      # zero-extends start_info
    call pvh_main
    jmp probe_halt_forever

# ---------------------------------------------------------------------------
# Linux 64-bit entry (ELF e_entry): long mode, the VMM's page tables (first
# 1 GiB identity mapped), RSI = boot_params. rep stosb leaves RSI alone.
    .globl linux64_entry
linux64_entry:
    cli
    cld
    lea __bss_start(%rip), %rdi
    lea __bss_end(%rip), %rcx
    sub %rdi, %rcx
    shr $3, %rcx                        # bss is page aligned: whole quadwords,
    xor %eax, %eax                      # 8x fewer (possibly emulated) steps
    rep stosq
    lea probe_bsp_stack_top(%rip), %rsp

    # Switch to the probe's GDT so nothing the VMM left in low memory stays
    # in use (the AP trampoline may later be copied there).
    lgdt probe_gdt_desc(%rip)
    pushq $0x18
    lea .Llinux64_cs(%rip), %rax
    push %rax
    lretq
.Llinux64_cs:
    PROBE_LOAD_DATA_SEGMENTS
    mov %rsi, %rdi
    call linux64_main
    jmp probe_halt_forever

# ---------------------------------------------------------------------------
# AP path, reached from the real-mode trampoline (smp_trampoline.s) by a far
# jump with CS = 0x08. The BSP's page tables are already complete.
    .code32
    .globl probe_ap_entry32
probe_ap_entry32:
    PROBE_LOAD_DATA_SEGMENTS
    PROBE_ENTER_LONG_MODE
    ljmpl $0x18, $.Lap_long

    .code64
.Lap_long:
    PROBE_LOAD_DATA_SEGMENTS
    # Claim a slot; it picks the stack and the APIC id table entry. APs
    # beyond the table park without a stack; the BSP sees the count.
    mov $1, %eax
    lock xadd %eax, PROBE_AP_NEXT(%rip)
    cmp ${max_aps}, %eax
    jae probe_halt_forever
    mov %eax, %edi
    lea 1(%rax), %eax
    imul ${ap_stack_size}, %rax, %rax
    lea probe_ap_stacks(%rip), %rsp
    add %rax, %rsp
    call probe_ap_main
    jmp probe_halt_forever

    .globl probe_halt_forever
probe_halt_forever:
    cli
    hlt
    jmp probe_halt_forever

# ---------------------------------------------------------------------------
# GDT. In .data and with the accessed bits preset, so loading a selector
# never needs to write to it.
    .section .data.probe_gdt, "aw"
    .balign 16
    .globl probe_gdt
probe_gdt:
    .quad 0
    .quad 0x00CF9B000000FFFF            # 0x08: 32-bit code, base 0, 4 GiB
    .quad 0x00CF93000000FFFF            # 0x10: data, base 0, 4 GiB
    .quad 0x00AF9B000000FFFF            # 0x18: 64-bit code
.Lprobe_gdt_end:

    .balign 8
    .globl probe_gdt_desc
probe_gdt_desc:
    .word .Lprobe_gdt_end - probe_gdt - 1
    .quad probe_gdt

# ---------------------------------------------------------------------------
# Stacks (not zeroed: see .noinit in link.ld).
    .section .noinit.probe_stacks, "aw", @nobits
    .balign 4096
    .space {bsp_stack_size}
    .globl probe_bsp_stack_top
probe_bsp_stack_top:
    .globl probe_ap_stacks
probe_ap_stacks:
    .space {ap_stack_size} * {max_aps}

    .text
