//! The output writers, one module per artifact format; each writes its
//! file and reads it back before the build reports success.

pub mod disk;
