//! aarch64: GICv3, PSCI, FDT and Image loading.
