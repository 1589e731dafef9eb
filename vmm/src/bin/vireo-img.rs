//! vireo-img: creates disk images for vireo-vmm.
//!
//! `vireo-img create [-b BACKING [-F raw|qcow2]] [--cluster-size BYTES] FILE [SIZE]`
//! makes a qcow2 v3 image (SIZE as in `--memory`: 10G, 512M, …; defaults to
//! the backing file's size).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vireo_vmm::devices::virtio::block::disk::DiskFormat;
use vireo_vmm::devices::virtio::block::qcow2::create::{create, CreateOptions};

#[derive(Parser)]
#[command(name = "vireo-img", about = "Creates disk images for vireo-vmm")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates a qcow2 v3 image (never overwrites an existing file).
    Create {
        /// Backing file (relative names are relative to FILE's directory).
        #[arg(short = 'b', long)]
        backing: Option<String>,
        /// Format of the backing file.
        #[arg(short = 'F', long, value_parser = ["raw", "qcow2"], default_value = "qcow2")]
        backing_format: String,
        /// Cluster size in bytes (a power of two, 512 to 2 MiB).
        #[arg(long, default_value_t = 65536)]
        cluster_size: u64,
        file: PathBuf,
        /// Virtual size: bytes, or with a K, M, G or T suffix.
        size: Option<String>,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("invalid size '{s}'")),
            };
            (&t[..t.len() - 1], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| format!("invalid size '{s}'"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

fn run(args: Args) -> Result<(), String> {
    let Command::Create {
        backing,
        backing_format,
        cluster_size,
        file,
        size,
    } = args.command;
    if !cluster_size.is_power_of_two() {
        return Err(format!("cluster size {cluster_size} is not a power of two"));
    }
    let opts = CreateOptions {
        size: size.as_deref().map(parse_size).transpose()?,
        backing,
        backing_format: if backing_format == "raw" {
            DiskFormat::Raw
        } else {
            DiskFormat::Qcow2
        },
        cluster_bits: cluster_size.trailing_zeros(),
    };
    create(&file, &opts).map_err(|e| format!("cannot create {e}"))
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vireo-img: {e}");
            ExitCode::FAILURE
        }
    }
}
