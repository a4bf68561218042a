//! Integration tests of ferry-client against real registries: Debian's
//! docker-registry (CNCF Distribution 2.8.2, a child process) and ferry's
//! own registry (in-process), plus skopeo reading what was pushed and a
//! fault-injecting layer in front of ferry's registry for retries.
//!
//! Needs the Debian packages docker-registry, skopeo and apache2-utils.

mod auth;
mod push_pull;
mod resume;
mod retries;
mod skopeo;
mod support;
mod tls;
mod verify;
