//! Exit codes and how failures are shown: the one place that decides both.
//!
//! A failure's exit code follows from its *kind*, found by walking the
//! error's chain of causes for the typed errors of ferry's libraries:
//! [`ClientError`] with its HTTP status or [`TransportKind`],
//! `std::io::Error` kinds such as `StorageFull`, the bundle reader's damage
//! errors, and so on; the outermost link that knows decides. Commands only
//! add context ("push to X failed"), mark the input errors they find
//! themselves with [`UserError`] and a finished check's findings with
//! [`ProblemFound`]; they never pick a code.
//!
//! | class | code | example message | hint |
//! | --- | --- | --- | --- |
//! | damaged | 1 | `site.ferry is truncated: member … needs 29626 bytes but the bundle has 20480` | copy the bundle again (all its parts) and compare its size or sha256sum |
//! | problem-found | 1 | `2 problem(s) in site.ferry` (verify, fsck, `--key`) | – |
//! | usage | 2 | `invalid value ':x' for '--listen'`, `files[0] (missing.bin): No such file or directory` | – |
//! | credentials | 2 | `registry answered 401 Unauthorized`, `token service answered 401` | `--username`/`--password`, or `podman login HOST` |
//! | untrusted-certificate | 2 | `its TLS certificate is not trusted: invalid peer certificate: UnknownIssuer` | `--ca-file CA.pem`, or `--insecure` |
//! | plain-http | 2 | `this registry speaks plain HTTP, not HTTPS` | add `--insecure` |
//! | tls | 2 | `TLS handshake failed: …` | the CA, or `--insecure` |
//! | unreachable | 69 | `cannot connect: Connection refused (os error 111)` | check host, port, firewall; run again |
//! | registry-failing | 69 | `registry answered 503 Service Unavailable` (after the retries) | see the registry's log; run again |
//! | disk-full | 69 | `the registry's disk is full; nothing was stored`, `No space left on device` | free space; run again (a push resumes) |
//! | internal | 70 | anything else: a bug, an unexpected I/O error, a registry breaking the protocol | – |
//! | (stdout closed) | 141 | nothing: the reader of stdout went away (`\| head`), as a tool killed by SIGPIPE | – |
//!
//! 1 means the content is bad (get a good copy), 2 that what was asked or
//! configured is (fix the command, the credentials, the TLS settings), 69
//! that something ferry needs is not available (a registry, a network, disk
//! space: fix that and run the same command again), 70 that ferry failed.
//! Hints name the command's own flags (`bundle create` has `--creds` and
//! `--plain-http` where `bundle push` has `--username` and `--insecure`).
//!
//! Errors go to stderr as `error:`, `caused by:` lines (each cause once)
//! and `hint:`. With `--json`, stdout also gets one object:
//! `{"error": {"class", "code", "message", "causes", "hint"}}`, unless the
//! command printed its own report and that report is the problem
//! (`verify`, `fsck`: class problem-found), so stdout always holds exactly
//! one JSON document.

use std::error::Error;
use std::fmt;
use std::io::ErrorKind;
use std::process::ExitCode;

use ferry_bundle::container::ContainerError;
use ferry_client::{ClientError, TransportKind};

/// Exit code when stdout was closed before ferry finished writing to it:
/// 128 + SIGPIPE, what a shell shows for a tool killed by that signal.
const OUTPUT_CLOSED: i32 = 141;

/// An error in what the user asked for, found by the command itself (an
/// argument, a file it was pointed at), with an optional hint on how to fix
/// it. Its class is always `usage` (exit 2).
#[derive(Debug)]
pub struct UserError {
    message: String,
    hint: Option<String>,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl UserError {
    pub fn new(message: impl Into<String>) -> Self {
        UserError {
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    /// A library error that the command knows to be the user's to fix
    /// (a configuration file, an htpasswd file), keeping its causes.
    pub fn from_error(error: impl Error + Send + Sync + 'static) -> Self {
        UserError {
            message: error.to_string(),
            hint: None,
            source: Some(Box::new(error)),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for UserError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// The command ran to the end and found a problem it already reported
/// (class `problem-found`, exit 1).
#[derive(Debug)]
pub struct ProblemFound(pub String);

impl fmt::Display for ProblemFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for ProblemFound {}

/// A library error with a hint only the command knows; its class still
/// comes from the error.
#[derive(Debug)]
struct Hinted {
    hint: &'static str,
    error: Box<dyn Error + Send + Sync>,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl Error for Hinted {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.error)
    }
}

/// `error` with a hint from the command that met it.
pub fn with_hint(error: impl Error + Send + Sync + 'static, hint: &'static str) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        hint,
        error: Box::new(error),
    })
}

/// The kinds of failure; each has one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Damaged,
    ProblemFound,
    Usage,
    Credentials,
    UntrustedCertificate,
    PlainHttp,
    Tls,
    Unreachable,
    RegistryFailing,
    DiskFull,
    Internal,
}

impl Class {
    fn code(self) -> u8 {
        match self {
            Class::Damaged | Class::ProblemFound => 1,
            Class::Usage
            | Class::Credentials
            | Class::UntrustedCertificate
            | Class::PlainHttp
            | Class::Tls => 2,
            Class::Unreachable | Class::RegistryFailing | Class::DiskFull => 69,
            Class::Internal => 70,
        }
    }

    /// The name `--json` reports.
    fn name(self) -> &'static str {
        match self {
            Class::Damaged => "damaged",
            Class::ProblemFound => "problem-found",
            Class::Usage => "usage",
            Class::Credentials => "credentials",
            Class::UntrustedCertificate => "untrusted-certificate",
            Class::PlainHttp => "plain-http",
            Class::Tls => "tls",
            Class::Unreachable => "unreachable",
            Class::RegistryFailing => "registry-failing",
            Class::DiskFull => "disk-full",
            Class::Internal => "internal",
        }
    }
}

/// How the failing command lets the user fix what a class of failure
/// needs, in its own flags; `HOST` stands for the registry's host.
struct Remedies {
    credentials: &'static str,
    trust: &'static str,
    plain_http: &'static str,
    damaged: &'static str,
}

/// `bundle push`, `./site.run push`.
const PUSH: Remedies = Remedies {
    credentials: "give the registry's user with --username and --password (or FERRY_REGISTRY_USERNAME and FERRY_REGISTRY_PASSWORD), or log in once with `podman login HOST`; if you did, check the user, the password and the user's rights",
    trust: "trust the registry's CA with --ca-file CA.pem (`ferry serve --tls auto` prints where its CA is), or skip verification with --insecure",
    plain_http: "this registry speaks plain HTTP: add --insecure",
    damaged: BUNDLE_DAMAGED,
};

/// `copy`: `bundle push`'s flags, from an OCI layout.
const COPY: Remedies = Remedies {
    damaged: "the OCI layout holds content that does not match its digest: copy the layout again, or check what wrote it",
    ..PUSH
};

/// `bundle create`: sources come with `--creds`, `--ca-file HOST=FILE`,
/// `--plain-http`, or the spec's `hosts:`.
const CREATE: Remedies = Remedies {
    credentials: "give credentials for HOST with --creds HOST=USER:PASSWORD, `username` and `password_env` under `hosts:` in the spec, --authfile, or `podman login HOST`; if you did, check them",
    trust: "trust the registry's CA with --ca-file HOST=CA.pem (or `ca_file` under `hosts:` in the spec), or skip verification with --insecure-registry HOST",
    plain_http: "this registry speaks plain HTTP: add --plain-http HOST (or `plain_http: true` under `hosts:` in the spec)",
    damaged: "a source gave other bytes than its digest or the spec's sha256 says: check the spec, and the source (a cached copy of it is checked again on the next run)",
};

/// Every other command.
const OTHER: Remedies = Remedies {
    credentials: "check the user and password, or log in with `podman login HOST`",
    trust: "trust the registry's CA (e.g. in /etc/containers/certs.d/HOST/ca.crt)",
    plain_http: "this registry speaks plain HTTP",
    damaged: BUNDLE_DAMAGED,
};

/// `image build`: the base image comes from ferry's store, a bundle, a
/// registry or a layout; `--creds`-style flags do not exist, `hosts:` does.
const IMAGE: Remedies = Remedies {
    credentials: "give credentials for HOST with `username` and `password_env` under `hosts:` in image.yaml, or `podman login HOST`; if you did, check them",
    trust: "trust the registry's CA with `ca_file` under `hosts:` in image.yaml, or set `insecure: true` there",
    plain_http: "this registry speaks plain HTTP: set `plain_http: true` for HOST under `hosts:` in image.yaml",
    damaged: "the base image is corrupt or unsafe to unpack: bring it in again from a source you trust (`ferry bundle import --repair`, `ferry image import`, or its registry); `ferry registry fsck --repair` finds damage in ferry's store",
};

const BUNDLE_DAMAGED: &str = "copy the bundle again (all of its parts, if it is split) and compare its size or sha256sum with the original";

/// How to show the failure of the command the user ran.
pub struct Reporting {
    json: bool,
    remedies: &'static Remedies,
}

impl Reporting {
    /// For the command `matches` parsed: its `--json`, and its flags for
    /// the hints.
    pub fn of(matches: &clap::ArgMatches) -> Reporting {
        let mut path = Vec::new();
        let mut innermost = matches;
        while let Some((name, sub)) = innermost.subcommand() {
            path.push(name);
            innermost = sub;
        }
        let json = matches!(innermost.try_get_one::<bool>("json"), Ok(Some(true)));
        let remedies = match path.as_slice() {
            ["bundle", "create"] => &CREATE,
            ["bundle", "push"] => &PUSH,
            ["copy"] => &COPY,
            ["image", ..] => &IMAGE,
            _ => &OTHER,
        };
        Reporting { json, remedies }
    }
}

/// A failure as shown: class, message, causes, hint.
struct Report {
    class: Class,
    message: String,
    causes: Vec<String>,
    hint: Option<String>,
}

impl Report {
    fn of(error: &anyhow::Error, remedies: &Remedies) -> Report {
        let class = classify(error);
        let message = error.to_string();
        let mut causes: Vec<String> = Vec::new();
        for link in error.chain().skip(1) {
            let text = link.to_string();
            if !message.contains(&text) && !causes.iter().any(|c| c.contains(&text)) {
                causes.push(text);
            }
            // ferry-client's messages name the deepest cause already; the
            // HTTP stack's layers under them only repeat the URL.
            if as_a::<ClientError>(link).is_some() {
                break;
            }
        }
        let explicit = error.chain().find_map(|link| {
            if let Some(user) = as_a::<UserError>(link) {
                user.hint.clone()
            } else {
                as_a::<Hinted>(link).map(|h| h.hint.to_string())
            }
        });
        let hint = explicit.or_else(|| hint(class, registry_host(error), remedies));
        Report {
            class,
            message,
            causes,
            hint,
        }
    }

    fn print(&self) {
        eprintln!("error: {}", self.message);
        for cause in &self.causes {
            eprintln!("  caused by: {cause}");
        }
        if let Some(hint) = &self.hint {
            eprintln!("hint: {hint}");
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {
            "class": self.class.name(),
            "code": self.class.code(),
            "message": self.message,
            "causes": self.causes,
            "hint": self.hint,
        }})
    }
}

/// Prints `error` for the user (and, with `--json`, as JSON on stdout) and
/// returns the exit code its class has.
pub fn report(error: &anyhow::Error, how: &Reporting) -> ExitCode {
    let report = Report::of(error, how.remedies);
    report.print();
    if how.json && report.class != Class::ProblemFound {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).expect("JSON of strings")
        );
    }
    ExitCode::from(report.class.code())
}

/// The class of `error`: that of the outermost link of its chain that has
/// one, else `internal`.
fn classify(error: &anyhow::Error) -> Class {
    error.chain().find_map(class_of).unwrap_or(Class::Internal)
}

/// `link` as a `T`, also when a library boxed it (`Box<ClientError>` in a
/// `#[source]` field shows up in the chain as the box).
fn as_a<'a, T: Error + 'static>(link: &'a (dyn Error + 'static)) -> Option<&'a T> {
    link.downcast_ref::<T>()
        .or_else(|| link.downcast_ref::<Box<T>>().map(|boxed| &**boxed))
}

/// The class one link decides, if it does; wrappers leave it to their cause.
fn class_of(link: &(dyn Error + 'static)) -> Option<Class> {
    use ferry_bundle::{
        cache::CacheError, create::CreateError, graph::GraphError, import::ImportError,
        push::PushError, sign::SignError, sources::SourceError, spec::SpecError,
        writer::WriteError,
    };
    if as_a::<UserError>(link).is_some() {
        return Some(Class::Usage);
    }
    if as_a::<ProblemFound>(link).is_some() {
        return Some(Class::ProblemFound);
    }
    if let Some(e) = as_a::<ClientError>(link) {
        return Some(client_class(e));
    }
    if let Some(e) = as_a::<std::io::Error>(link) {
        return io_class(e);
    }
    if let Some(e) = as_a::<ferry_bundle::BundleError>(link) {
        return bundle_class(e);
    }
    if let Some(e) = as_a::<GraphError>(link) {
        return match e {
            GraphError::Io { .. } => None,
            _ => Some(Class::Damaged),
        };
    }
    if let Some(e) = as_a::<PushError>(link) {
        return match e {
            PushError::Mapping(_) | PushError::BaseMissing { .. } | PushError::TagExists { .. } => {
                Some(Class::Usage)
            }
            _ => None,
        };
    }
    if let Some(e) = as_a::<ImportError>(link) {
        return match e {
            ImportError::BaseMissing { .. } => Some(Class::Usage),
            ImportError::MissingBlob(_) => Some(Class::Damaged),
            _ => None,
        };
    }
    if let Some(e) = as_a::<ferry_store::StoreError>(link) {
        use ferry_store::StoreError as S;
        return match e {
            S::DigestMismatch { .. }
            | S::SizeMismatch { .. }
            | S::ManifestInvalid(_)
            | S::ManifestBlobUnknown(_)
            | S::NotAManifest(_) => Some(Class::Damaged),
            S::NameInvalid(_) | S::TagInvalid(_) | S::ManifestTooLarge { .. } => Some(Class::Usage),
            _ => None,
        };
    }
    if let Some(e) = as_a::<CreateError>(link) {
        return match e {
            CreateError::Spec(_)
            | CreateError::Entry { .. }
            | CreateError::DuplicateTarget { .. }
            | CreateError::DuplicateSource(_)
            | CreateError::Host { .. } => Some(Class::Usage),
            _ => None,
        };
    }
    if as_a::<SpecError>(link).is_some() {
        return Some(Class::Usage);
    }
    if let Some(e) = as_a::<SourceError>(link) {
        return match e {
            SourceError::Checksum { .. } => Some(Class::Damaged),
            SourceError::Registry { .. } | SourceError::Io { .. } | SourceError::Cache(_) => None,
            _ => Some(Class::Usage),
        };
    }
    if let Some(e) = as_a::<CacheError>(link) {
        return match e {
            CacheError::TooLarge { .. } => Some(Class::Usage),
            _ => None,
        };
    }
    if let Some(e) = as_a::<WriteError>(link) {
        return match e {
            WriteError::SplitSelfExtracting | WriteError::SplitTooSmall | WriteError::Sign(_) => {
                Some(Class::Usage)
            }
            WriteError::CorruptCache { .. } => Some(Class::Damaged),
            WriteError::MissingBlob(_) => Some(Class::Internal),
            _ => None,
        };
    }
    if let Some(e) = as_a::<SignError>(link) {
        return match e {
            SignError::Io { .. } => None,
            SignError::Unsigned | SignError::WrongKey { .. } | SignError::BadSignature => {
                Some(Class::ProblemFound)
            }
            SignError::Crypto(_) => Some(Class::Internal),
            _ => Some(Class::Usage),
        };
    }
    if let Some(e) = as_a::<ferry_oci::layout::LayoutError>(link) {
        return match e {
            ferry_oci::layout::LayoutError::Io { .. } => None,
            _ => Some(Class::Usage),
        };
    }
    if let Some(e) = as_a::<reqwest::Error>(link) {
        return e.is_connect().then_some(Class::Unreachable);
    }
    image_class(link)
}

/// `ferry image build|import`: a base image that is corrupt or hostile is
/// damaged input (1); one that lacks what a format needs, a spec that asks
/// the impossible, or a full output directory is the user's to fix (2).
///
/// Many image errors wrap others with `#[error(transparent)]`, which hides
/// the inner error from the source chain; they are opened here by hand.
fn image_class(link: &(dyn Error + 'static)) -> Option<Class> {
    use ferry_image::assemble::AssembleError;
    use ferry_image::boot::{grub::GrubError, kernel::KernelError, live::NoLiveInitramfs};
    use ferry_image::build::BuildError;
    use ferry_image::customize::CustomizeError;
    use ferry_image::kubernetes::KubernetesError;
    use ferry_image::output::{
        OutputError, disk::DiskError, iso::IsoError, netboot::NetbootError, ova::OvaError,
        squashfs::SquashfsError,
    };
    use ferry_image::rootfs::layer::LayerError;
    use ferry_image::source::SourceError;
    if let Some(e) = as_a::<ferry_image::fetch::FetchError>(link) {
        return match e {
            ferry_image::fetch::FetchError::Platform(e) => image_class(e),
            ferry_image::fetch::FetchError::Create(e) => class_of(e),
        };
    }
    if let Some(e) = as_a::<BuildError>(link) {
        return match e {
            BuildError::OutputNotEmpty { .. } | BuildError::Name(_) => Some(Class::Usage),
            BuildError::Kernel(_) => Some(Class::Usage),
            BuildError::Assemble(e) => image_class(e),
            BuildError::Output(e) => image_class(e),
            BuildError::Kubernetes(e) => image_class(e),
            _ => None,
        };
    }
    if let Some(e) = as_a::<AssembleError>(link) {
        return match e {
            AssembleError::Source(e) => image_class(e),
            AssembleError::Layer(e) => image_class(e),
            AssembleError::Customize(e) => image_class(e),
            AssembleError::Rootfs(_) => Some(Class::Damaged),
        };
    }
    if let Some(e) = as_a::<SourceError>(link) {
        return match e {
            SourceError::Io { .. } => None,
            SourceError::Digest { .. }
            | SourceError::MissingBlob { .. }
            | SourceError::Invalid { .. } => Some(Class::Damaged),
            _ => Some(Class::Usage),
        };
    }
    if let Some(e) = as_a::<LayerError>(link) {
        return match e {
            LayerError::Read { .. } => None,
            LayerError::Path { .. } | LayerError::Unsupported { .. } => Some(Class::Damaged),
        };
    }
    if let Some(e) = as_a::<KubernetesError>(link) {
        return match e {
            KubernetesError::Customize(e) => image_class(e.as_ref()),
            KubernetesError::Rootfs(_) => None,
            _ => Some(Class::Usage),
        };
    }
    if let Some(e) = as_a::<CustomizeError>(link) {
        return match e {
            CustomizeError::Kubernetes(e) => image_class(e.as_ref()),
            CustomizeError::Read { .. } => None,
            _ => Some(Class::Usage),
        };
    }
    if let Some(e) = as_a::<GrubError>(link) {
        return match e {
            GrubError::NoMkimage
            | GrubError::NoPlatform { .. }
            | GrubError::MissingModules { .. } => Some(Class::Usage),
            _ => None,
        };
    }
    if as_a::<KernelError>(link).is_some()
        || as_a::<NoLiveInitramfs>(link).is_some()
        || as_a::<ferry_image::spec::SpecError>(link).is_some()
    {
        return Some(Class::Usage);
    }
    if let Some(e) = as_a::<OutputError>(link) {
        return match e {
            OutputError::Spec { .. } => Some(Class::Usage),
            OutputError::Squashfs(e) => image_class(e),
            OutputError::Netboot(e) => image_class(e),
            OutputError::Iso(e) => image_class(e),
            OutputError::Disk(e) => image_class(e),
            OutputError::Ova(e) => image_class(e),
            _ => None,
        };
    }
    if let Some(e) = as_a::<DiskError>(link) {
        return match e {
            DiskError::TooSmall { .. } => Some(Class::Usage),
            DiskError::Grub(e) => image_class(e),
            _ => None,
        };
    }
    if let Some(e) = as_a::<IsoError>(link) {
        return match e {
            IsoError::Label { .. } | IsoError::Live(_) => Some(Class::Usage),
            IsoError::Grub(e) => image_class(e),
            _ => None,
        };
    }
    if let Some(e) = as_a::<SquashfsError>(link) {
        return match e {
            SquashfsError::BlockSize(_)
            | SquashfsError::Level(_)
            | SquashfsError::MkfsTime(_)
            | SquashfsError::NameTooLong { .. }
            | SquashfsError::TooManyIds => Some(Class::Usage),
            _ => None,
        };
    }
    if let Some(OvaError::Name { .. } | OvaError::Ovf(_)) = as_a::<OvaError>(link) {
        return Some(Class::Usage);
    }
    if let Some(e) = as_a::<NetbootError>(link) {
        return match e {
            NetbootError::Push { .. } | NetbootError::Live(_) => Some(Class::Usage),
            _ => None,
        };
    }
    if let Some(e) = as_a::<ferry_image::import::ImportError>(link) {
        use ferry_image::import::ImportError as I;
        return match e {
            I::BadTag { .. } | I::NotATar { .. } | I::Empty { .. } => Some(Class::Usage),
            _ => None,
        };
    }
    None
}

fn client_class(error: &ClientError) -> Class {
    use reqwest::StatusCode;
    match error {
        ClientError::Registry { status, .. } => match *status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Class::Credentials,
            StatusCode::INSUFFICIENT_STORAGE => Class::DiskFull,
            s if s.is_server_error()
                || s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::TOO_MANY_REQUESTS =>
            {
                Class::RegistryFailing
            }
            // The registry refused the request itself: a name that does
            // not exist, a read-only registry, a size over its limit.
            _ => Class::Usage,
        },
        ClientError::Auth { status, .. } => match *status {
            Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Class::Credentials,
            _ => Class::RegistryFailing,
        },
        ClientError::Transport { kind, .. } => match kind {
            TransportKind::Unreachable | TransportKind::Interrupted => Class::Unreachable,
            TransportKind::UntrustedCertificate => Class::UntrustedCertificate,
            TransportKind::PlainHttp => Class::PlainHttp,
            TransportKind::Tls => Class::Tls,
        },
        ClientError::Credentials(_) | ClientError::Tls(_) | ClientError::InvalidArgument(_) => {
            Class::Usage
        }
        ClientError::DigestMismatch { .. }
        | ClientError::SizeMismatch { .. }
        | ClientError::SourceMismatch { .. }
        | ClientError::SourceInvalid { .. } => Class::Damaged,
        ClientError::SourceIo { error, .. } | ClientError::Io { error, .. } => {
            io_class(error).unwrap_or(Class::Internal)
        }
        ClientError::Protocol { .. } | ClientError::ManifestTooLarge { .. } => Class::Internal,
    }
}

/// The kinds of local I/O failure that have a class: a full disk, and a
/// path the user gave that cannot be used.
fn io_class(error: &std::io::Error) -> Option<Class> {
    match error.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
            Some(Class::DiskFull)
        }
        ErrorKind::NotFound
        | ErrorKind::PermissionDenied
        | ErrorKind::ReadOnlyFilesystem
        | ErrorKind::IsADirectory
        | ErrorKind::NotADirectory
        | ErrorKind::AlreadyExists => Some(Class::Usage),
        _ => None,
    }
}

fn bundle_class(error: &ferry_bundle::BundleError) -> Option<Class> {
    use ferry_bundle::BundleError as B;
    match error {
        // Cannot open the file: the I/O error says whose fault.
        B::Container(ContainerError::Open { source, .. }) => io_class(source),
        B::NotABundle { .. } | B::Container(ContainerError::Directory { .. }) => Some(Class::Usage),
        B::Container(_)
        | B::Tar { .. }
        | B::UnsafeMember { .. }
        | B::BadHeader { .. }
        | B::MissingLastPart { .. }
        | B::Truncated { .. }
        | B::Incomplete { .. }
        | B::Invalid { .. }
        | B::IndexMismatch { .. } => Some(Class::Damaged),
    }
}

/// `host[:port]` of the registry a client error in the chain talked to.
fn registry_host(error: &anyhow::Error) -> Option<String> {
    let url = error
        .chain()
        .find_map(|link| as_a::<ClientError>(link))?
        .url()?;
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    Some(rest.split('/').next().unwrap_or(rest).to_string())
}

/// The hint a class has for the command's flags.
fn hint(class: Class, host: Option<String>, remedies: &Remedies) -> Option<String> {
    let named = host.as_deref().unwrap_or("the registry");
    let fill = |text: &str| text.replace("HOST", host.as_deref().unwrap_or("HOST"));
    Some(match class {
        Class::Damaged => remedies.damaged.to_string(),
        Class::Credentials => fill(remedies.credentials),
        Class::UntrustedCertificate | Class::Tls => fill(remedies.trust),
        Class::PlainHttp => fill(remedies.plain_http),
        Class::Unreachable => format!(
            "nothing answers at {named}: check the host name and port, that the registry runs, and any firewall on the way; then run the same command again"
        ),
        Class::RegistryFailing => format!(
            "{named} keeps failing: see its log, and run the same command again once it works (a push resumes where it stopped)"
        ),
        Class::DiskFull if host.is_some() => format!(
            "free space on the disk of the registry at {named} (or grow it), then run the same command again: what was pushed stays, the rest resumes"
        ),
        Class::DiskFull => {
            "free space on the disk ferry writes to, or choose another (--state, -o), then run the same command again".to_string()
        }
        Class::ProblemFound | Class::Usage | Class::Internal => return None,
    })
}

/// Makes a closed stdout end ferry quietly, as it ends the tools ferry
/// runs next to (`ferry bundle inspect X | head -2`). Rust ignores SIGPIPE,
/// so writing to a closed pipe fails with EPIPE, and `println!` panics on
/// that ("failed printing to stdout: Broken pipe"); the panic hook turns
/// exactly that panic into exit 141 with nothing printed. Any other
/// failure to write stdout is reported like an error, by its class.
pub fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied());
        let Some(why) = payload.and_then(|p| p.strip_prefix("failed printing to stdout: ")) else {
            return default(info);
        };
        // std's message ends with the OS error: "Broken pipe (os error 32)".
        let os_error = why
            .rsplit_once("(os error ")
            .and_then(|(_, n)| n.trim_end_matches(')').parse::<i32>().ok())
            .map(std::io::Error::from_raw_os_error);
        match os_error {
            Some(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(OUTPUT_CLOSED),
            Some(e) => {
                eprintln!("error: cannot write the output: {e}");
                let class = io_class(&e).unwrap_or(Class::Internal);
                std::process::exit(class.code().into());
            }
            None => default(info),
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_bundle::push::PushError;
    use reqwest::{Method, StatusCode};

    fn refusal(status: StatusCode) -> ClientError {
        ClientError::Registry {
            method: Method::PATCH,
            url: "http://reg.site:5000/v2/a/blobs/uploads/x".into(),
            status,
            errors: Vec::new(),
        }
    }

    #[test]
    fn the_typed_cause_decides_through_boxes_and_context() {
        let stopped = PushError::Stopped {
            registry: "reg.site:5000".into(),
            source: Box::new(refusal(StatusCode::INSUFFICIENT_STORAGE)),
        };
        let error = anyhow::Error::new(stopped).context("push to reg.site:5000 failed");
        assert_eq!(classify(&error), Class::DiskFull);
        let report = Report::of(&error, &PUSH);
        assert!(report.hint.unwrap().contains("registry at reg.site:5000"));

        let full = std::io::Error::from(ErrorKind::StorageFull);
        let error = anyhow::Error::new(full).context("writing x.ferry");
        assert_eq!(classify(&error), Class::DiskFull);

        let error = anyhow::Error::new(refusal(StatusCode::UNAUTHORIZED));
        assert_eq!(Report::of(&error, &PUSH).class.code(), 2);
        assert_eq!(classify(&anyhow::anyhow!("something odd")), Class::Internal);
    }

    #[test]
    fn the_command_s_own_verdict_wins() {
        let full = std::io::Error::from(ErrorKind::StorageFull);
        let error = anyhow::Error::new(UserError::from_error(full).with_hint("do this"));
        assert_eq!(classify(&error), Class::Usage);
        assert_eq!(Report::of(&error, &OTHER).hint.as_deref(), Some("do this"));
    }

    #[test]
    fn each_cause_is_said_once() {
        let inner = std::io::Error::other("disk on fire");
        let error = anyhow::Error::new(inner)
            .context("reading blob x: disk on fire")
            .context("push failed");
        let report = Report::of(&error, &OTHER);
        assert_eq!(report.message, "push failed");
        assert_eq!(report.causes, vec!["reading blob x: disk on fire"]);
    }
}
