use super::*;

fn vcpu() -> VcpuState {
    VcpuState {
        mpidr: 0x8000_0001,
        mp_state: MP_STATE_STOPPED,
        regs: vec![
            // X0 (u64), V31 (u128), and a u32 register (FPSR).
            Reg {
                id: 0x6030_0000_0010_0000,
                value: 0x1122_3344_5566_7788u64.to_ne_bytes().to_vec(),
            },
            Reg {
                id: 0x6040_0000_0010_00cc,
                value: (0..16).collect(),
            },
            Reg {
                id: 0x6020_0000_0010_00d4,
                value: vec![0xff, 0, 0x10, 0],
            },
        ],
    }
}

#[test]
fn vcpu_state_round_trips_through_json() {
    let saved = vcpu();
    let json = serde_json::to_string(&saved).unwrap();
    assert!(
        json.contains("\"value\":\"000102030405060708090a0b0c0d0e0f\""),
        "{json}"
    );
    let back: VcpuState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, saved);
}

/// The migration's State frame encodes the same types with bincode: the
/// registers' values go as plain bytes, and come back exactly.
#[test]
fn vcpu_state_round_trips_through_the_binary_encoding() {
    let saved = vcpu();
    let cfg = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&saved, cfg).unwrap();
    let json = serde_json::to_string(&saved).unwrap();
    assert!(bytes.len() * 2 < json.len(), "{} bytes", bytes.len());
    let (back, used): (VcpuState, usize) = bincode::serde::decode_from_slice(&bytes, cfg).unwrap();
    assert_eq!((back, used), (saved, bytes.len()));
}

#[test]
fn bad_register_hex_is_an_error() {
    for value in ["\"abc\"", "\"zz\"", "\"0x\"", "12"] {
        let json = format!("{{\"id\":1,\"value\":{value}}}");
        assert!(serde_json::from_str::<Reg>(&json).is_err(), "{value}");
    }
}

#[test]
fn gic_state_round_trips_through_json() {
    let gic = GicState {
        nr_irqs: 128,
        dist: dist_offsets(128)
            .into_iter()
            .map(|o| (o, o ^ 0xdead_beef))
            .collect(),
        spi_levels: vec![0, 1 << 5, 0],
        cpus: vec![GicCpuState {
            mpidr: 0x8000_0000,
            redist: redist_offsets().into_iter().map(|o| (o, 7)).collect(),
            icc: icc_regs(4 << 8).into_iter().map(|r| (r, r + 1)).collect(),
        }],
    };
    let back: GicState = serde_json::from_str(&serde_json::to_string(&gic).unwrap()).unwrap();
    assert_eq!(back, gic);
}

#[test]
fn register_sizes_come_from_the_id() {
    assert_eq!(reg_size(0x6030_0000_0010_0000), 8);
    assert_eq!(reg_size(0x6040_0000_0010_00cc), 16);
    assert_eq!(reg_size(0x6020_0000_0010_00d4), 4);
    // KVM_REG_ARM_TIMER_CNT (CNTVCT_EL0): a 64-bit system register.
    assert_eq!(reg_size(0x6030_0000_0013_df1a), 8);
}

#[test]
fn distributor_covers_every_spi_once() {
    let offsets = dist_offsets(128);
    assert_eq!(offsets[0], 0x0000, "GICD_CTLR first");
    // 96 SPIs: 3 words of each 1-bit array, 6 of ICFGR, 24 of IPRIORITYR,
    // 2 × 96 IROUTER halves.
    assert_eq!(offsets.len(), 1 + 3 + 6 + 24 + 192 + 3 * 3);
    assert!(
        offsets.contains(&0x0084) && !offsets.contains(&0x0080),
        "IGROUPR1, not IGROUPR0"
    );
    assert!(
        offsets.contains(&0x0C08) && !offsets.contains(&0x0C04),
        "ICFGR2 is the first SPI word"
    );
    assert!(offsets.contains(&0x0420) && offsets.contains(&0x047C));
    assert!(!offsets.contains(&0x0480), "no priority past INTID 127");
    assert!(
        offsets.contains(&0x6100) && offsets.contains(&0x6104),
        "IROUTER32"
    );
    assert!(
        offsets.contains(&0x63F8) && offsets.contains(&0x63FC),
        "IROUTER127"
    );
    let mut unique = offsets.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), offsets.len());
    // Enable, pending and active come last, after everything they depend on.
    let tail: Vec<u32> = offsets[offsets.len() - 9..].to_vec();
    assert_eq!(
        tail,
        [0x104, 0x108, 0x10C, 0x204, 0x208, 0x20C, 0x304, 0x308, 0x30C]
    );
}

#[test]
fn redistributor_registers_are_in_the_sgi_frame() {
    let offsets = redist_offsets();
    assert_eq!(offsets[0], 0);
    assert_eq!(
        &offsets[1..],
        &[
            0x1_0080, 0x1_0C00, 0x1_0C04, 0x1_0400, 0x1_0404, 0x1_0408, 0x1_040C, 0x1_0410,
            0x1_0414, 0x1_0418, 0x1_041C, 0x1_0100, 0x1_0200, 0x1_0300
        ]
    );
}

#[test]
fn set_registers_have_clear_twins() {
    assert_eq!(clear_twin(0x0104), Some(0x0184));
    assert_eq!(clear_twin(0x020C), Some(0x028C));
    assert_eq!(clear_twin(0x0300), Some(0x0380));
    assert_eq!(clear_twin(0x1_0100), Some(0x1_0180));
    assert_eq!(clear_twin(0x1_0200), Some(0x1_0280));
    for plain in [0x0000, 0x0084, 0x0420, 0x0C08, 0x6100, 0x1_0080, 0x1_0400] {
        assert_eq!(clear_twin(plain), None, "{plain:#x}");
    }
}

#[test]
fn icc_registers_follow_the_priority_bits() {
    // Encodings as the GICv3 architecture gives them (op0 3, op1 0, CRn 12).
    assert_eq!(ICC_SRE_EL1, 0xc665);
    assert_eq!(ICC_CTLR_EL1, 0xc664);
    assert_eq!(icc_ap0r(0), 0xc644);
    assert_eq!(icc_ap1r(3), 0xc64b);
    let five = icc_regs(4 << 8);
    assert_eq!(
        five[..2],
        [ICC_SRE_EL1, ICC_CTLR_EL1],
        "SRE, then CTLR, first"
    );
    assert_eq!(five.len(), 7 + 2);
    assert_eq!(icc_regs(5 << 8).len(), 7 + 4);
    assert_eq!(icc_regs(6 << 8).len(), 7 + 8);
    assert_eq!(icc_regs(7 << 8).len(), 7 + 8);
}

#[test]
fn vgic_attributes_pack_the_affinity() {
    assert_eq!(vgic_mpidr(0x8000_0000), 0);
    assert_eq!(vgic_mpidr(0x8000_0102), 0x0000_0102 << 32);
    // Aff3 moves from MPIDR bits 39..32 to attribute bits 63..56.
    assert_eq!(vgic_mpidr(0xab_8001_0203), 0xab01_0203 << 32);
    assert_eq!(cpu_attr(0x8000_0001, 0x1_0100), (1 << 32) | 0x1_0100);
    assert_eq!(level_info_attr(0x8000_0000, 64), 64);
    assert_eq!(spi_level_words(128).collect::<Vec<_>>(), [32, 64, 96]);
}
