# Real-mode start of an AP. Copied by smp.rs to a free page below 1 MiB and
# started there by SIPI with CS = page >> 4, IP = 0; so it only addresses
# itself relative to its start, and otherwise uses absolute addresses in the
# probe image (flat 32-bit, after the switch to protected mode).
    .section .rodata.probe_trampoline, "a"
    .balign 16
    .code16
    .globl probe_trampoline_start
probe_trampoline_start:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    lgdtl .Ltrampoline_gdt_desc - probe_trampoline_start   # 32-bit base
    mov %cr0, %eax
    or $1, %eax                         # PE
    mov %eax, %cr0
    ljmpl $0x08, $probe_ap_entry32      # entry.s, 32-bit flat code

    .balign 8
.Ltrampoline_gdt_desc:
    .word 4 * 8 - 1                     # probe_gdt has 4 descriptors
    .long probe_gdt
    .globl probe_trampoline_end
probe_trampoline_end:
    .code64
    .text
