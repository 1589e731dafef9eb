//! CPU exceptions on the boot CPU become a `PROBE done fail exception ...`
//! line instead of a silent triple fault. Interrupts stay disabled, so only
//! the 32 exception vectors get gates.

use core::arch::asm;

use crate::{cpu, serial};

const VECTORS: usize = 32;
/// Bytes per stub in `probe_trap_stubs` (see the .balign below).
const STUB_SIZE: u64 = 16;
/// 64-bit code selector of the probe's GDT (entry.s).
const CODE64_SELECTOR: u64 = 0x18;
/// Present, DPL 0, 64-bit interrupt gate.
const GATE_INTERRUPT: u64 = 0x8E;
const PAGE_FAULT: u64 = 14;

// Each stub pushes its vector number and joins the common path, which hands
// the vector and the CPU-pushed frame to `probe_trap`.
core::arch::global_asm!(
    r#"
    .section .text.probe_trap, "ax"
    .code64
    .balign 16
    .globl probe_trap_stubs
probe_trap_stubs:
    .set probe_vector, 0
    .rept 32
    .balign 16
    pushq $probe_vector
    jmp probe_trap_common
    .set probe_vector, probe_vector + 1
    .endr
probe_trap_common:
    mov (%rsp), %rdi
    lea 8(%rsp), %rsi
    and $-16, %rsp
    call probe_trap
    jmp probe_halt_forever
    .text
"#,
    options(att_syntax)
);

extern "C" {
    static probe_trap_stubs: u8;
}

/// Two u64 per 64-bit gate descriptor.
static mut IDT: [u64; VECTORS * 2] = [0; VECTORS * 2];

#[repr(C, packed)]
struct Idtr {
    limit: u16,
    base: u64,
}

/// Fill the IDT with gates to the stubs and load it (boot CPU only).
pub fn install() {
    let stubs = core::ptr::addr_of!(probe_trap_stubs) as u64;
    // SAFETY: called once on the boot CPU before anything else uses IDT.
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) };
    for (vector, gate) in idt.chunks_exact_mut(2).enumerate() {
        let handler = stubs + vector as u64 * STUB_SIZE;
        gate[0] = (handler & 0xFFFF)
            | CODE64_SELECTOR << 16
            | GATE_INTERRUPT << 40
            | (handler >> 16 & 0xFFFF) << 48;
        gate[1] = handler >> 32;
    }
    let idtr = Idtr {
        limit: (core::mem::size_of_val(idt) - 1) as u16,
        base: idt.as_ptr() as u64,
    };
    // SAFETY: the IDT is static and its gates point at valid stubs.
    unsafe { asm!("lidt [{}]", in(reg) &idtr, options(readonly, nostack, preserves_flags)) }
}

/// Whether the CPU pushes an error code for `vector`.
fn has_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

#[no_mangle]
extern "C" fn probe_trap(vector: u64, frame: *const u64) -> ! {
    let rip_slot = usize::from(has_error_code(vector));
    // SAFETY: the CPU pushed (error code,) RIP, CS, RFLAGS, RSP, SS here.
    let rip = unsafe { frame.add(rip_slot).read() };
    let line = serial::report("done fail exception ")
        .dec(vector)
        .str(" rip=")
        .hex(rip);
    let line = if vector == PAGE_FAULT {
        line.str(" cr2=").hex(cpu::read_cr2())
    } else {
        line
    };
    line.end();
    crate::exit(false)
}
