//! Integration tests of ferry-netboot.
