//! An OCI image layout directory as something to push ([`Content`]):
//! `ferry copy oci:DIR[:REF] docker://HOST/REPO[:TAG]`. Blobs stream from
//! their files, like a bundle's from their offsets.

use std::sync::Arc;

use ferry_client::{BlobSource, FileRange};
use ferry_oci::Digest;
use ferry_oci::layout::OciLayout;

use crate::format::Entry;
use crate::graph::ManifestSource;
use crate::push::Content;

pub struct LayoutContent {
    pub layout: OciLayout,
    pub entries: Vec<Entry>,
}

impl ManifestSource for LayoutContent {
    fn manifest_bytes(&self, digest: &Digest) -> std::io::Result<Option<Vec<u8>>> {
        self.layout.read_blob(digest)
    }
}

impl Content for LayoutContent {
    fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn blob_source(&self, digest: &Digest) -> Option<Arc<dyn BlobSource>> {
        let range = FileRange::whole(self.layout.blob_path(digest)).ok()?;
        Some(Arc::new(range))
    }
}
