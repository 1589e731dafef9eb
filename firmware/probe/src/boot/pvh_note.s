# The PVH ELF note (Xen's XEN_ELFNOTE_PHYS32_ENTRY = 18): tells a PVH loader
# the 32-bit physical entry point. The descriptor is 8 bytes like Linux's,
# of which loaders read the low 32 bits. Left out by `linux64-only`.
    .pushsection .note.pvh, "a", @note
    .balign 4
    .long 4                             # namesz: "Xen\0"
    .long 8                             # descsz
    .long 18                            # type: PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4
    .popsection
