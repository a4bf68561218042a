//! Runs the virtual-disk writers on a raw disk image, for bench/image.sh
//! and for trying them by hand:
//!
//! ```text
//! cargo run --release -p ferry-image --example vdisk -- qcow2 RAW OUT.qcow2
//! cargo run --release -p ferry-image --example vdisk -- vmdk RAW OUT.vmdk [THREADS]
//! cargo run --release -p ferry-image --example vdisk -- ova RAW DIR NAME
//! ```
//!
//! Prints what the writer reports.

use std::path::Path;
use std::process::ExitCode;

use ferry_image::output::ovf::{
    Appliance, Controller, Firmware, GuestOs, Hardware, Nic, Product, Property,
};
use ferry_image::output::vmdk::{AdapterType, StreamOptions};
use ferry_image::output::{ova, qcow2, vmdk};
use ferry_oci::progress::NoProgress;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result: Result<String, Box<dyn std::error::Error>> =
        match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["qcow2", raw, out] => qcow2::write(Path::new(raw), Path::new(out), &NoProgress)
                .map(|r| format!("{r:?}"))
                .map_err(Into::into),
            ["vmdk", raw, out, ref threads @ ..] => {
                let options = StreamOptions {
                    adapter: AdapterType::LsiLogic,
                    hardware_version: 13,
                    threads: threads
                        .first()
                        .map_or(0, |t| t.parse().expect("THREADS is a number")),
                };
                vmdk::write_stream_optimized(Path::new(raw), Path::new(out), &options, &NoProgress)
                    .map(|r| format!("{r:?}"))
                    .map_err(Into::into)
            }
            ["ova", raw, dir, name] => {
                let options = ova::OvaOptions {
                    name: name.to_owned(),
                    appliance: Appliance {
                        name: name.to_owned(),
                        product: Product {
                            product: name.to_owned(),
                            version: "0.0.0".to_owned(),
                            ..Product::default()
                        },
                        properties: vec![Property::input("raw", raw)],
                        os: GuestOs::from_vmware_id("other5xLinux64Guest"),
                        hardware: Hardware {
                            version: 13,
                            firmware: Firmware::Efi,
                            cpus: 2,
                            memory_mib: 2048,
                            controller: Controller::Pvscsi,
                            nic: Nic::Vmxnet3,
                        },
                        network: "nic0".to_owned(),
                        transport: None,
                    },
                    threads: 0,
                    mtime: 0,
                };
                ova::write(Path::new(raw), Path::new(dir), &options, &NoProgress)
                    .map(|r| format!("{r:?}"))
                    .map_err(Into::into)
            }
            _ => {
                eprintln!("usage: vdisk qcow2 RAW OUT | vmdk RAW OUT [THREADS] | ova RAW DIR NAME");
                return ExitCode::from(2);
            }
        };
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vdisk: {e}");
            ExitCode::FAILURE
        }
    }
}
