//! x86_64 boot: memory layout, irqchip, MP table, boot protocols, vCPU registers.
