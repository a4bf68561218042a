//! A cloud-init NoCloud seed baked into the image
//! (`/var/lib/cloud/seed/nocloud/`, cloud-init's "NoCloud" datasource
//! docs): `user-data`, `meta-data` and optionally `network-config`.
//! cloud-init reads it at first boot with no network and no ISO attached.

use super::{Context, CustomizeError, write_file};
use crate::rootfs::Rootfs;
use crate::spec::CloudInitSpec;

const SEED: &str = "var/lib/cloud/seed/nocloud";

pub fn apply(
    seed: &CloudInitSpec,
    image_name: Option<&str>,
    rootfs: &mut Rootfs,
    cx: &Context<'_>,
) -> Result<(), CustomizeError> {
    let part = |inline: &Option<String>,
                file: &Option<std::path::PathBuf>,
                what: &str|
     -> Result<Option<Vec<u8>>, CustomizeError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(CustomizeError::invalid(
                "cloud_init",
                format!("give {what} or {what}_file, not both"),
            )),
            (Some(text), None) => Ok(Some(text.as_bytes().to_vec())),
            (None, Some(path)) => cx.read_local(path).map(Some),
            (None, None) => Ok(None),
        }
    };
    let user_data = part(&seed.user_data, &seed.user_data_file, "user_data")?
        .unwrap_or_else(|| b"#cloud-config\n{}\n".to_vec());
    let name = image_name.unwrap_or("ferry-image");
    let meta_data = part(&seed.meta_data, &seed.meta_data_file, "meta_data")?
        .unwrap_or_else(|| format!("instance-id: {name}\nlocal-hostname: {name}\n").into_bytes());
    write_file(rootfs, cx, &format!("{SEED}/user-data"), &user_data, 0o600)?;
    write_file(rootfs, cx, &format!("{SEED}/meta-data"), &meta_data, 0o600)?;
    if let Some(network) = &seed.network_config {
        write_file(
            rootfs,
            cx,
            &format!("{SEED}/network-config"),
            network.as_bytes(),
            0o600,
        )?;
    }
    Ok(())
}
