pub mod atomic;
pub mod netboot;
pub mod ova;
pub mod ovf;
pub mod pipeline;
pub mod qcow2;
pub mod raw;
pub mod vmdk;
