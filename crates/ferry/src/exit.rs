//! Exit codes and how failures are shown.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | the command ran and found a problem (verification failed, fsck found corruption) |
//! | 2 | the user's input is wrong: arguments (clap also uses 2), config, files, references |
//! | 70 | ferry itself failed (an I/O error, a bug); the message says what |

use std::fmt;
use std::process::ExitCode;

pub const PROBLEM_FOUND: u8 = 1;
pub const USER_ERROR: u8 = 2;
pub const INTERNAL_ERROR: u8 = 70;

/// An error caused by what the user asked for, with an optional hint on
/// how to fix it. Commands return it inside `anyhow::Error`.
#[derive(Debug)]
pub struct UserError {
    pub message: String,
    pub hint: Option<String>,
    /// The error's sources, outermost first: the OS or network error that
    /// says *why* (e.g. "Connection refused" under "error sending request").
    pub causes: Vec<String>,
}

impl UserError {
    pub fn new(message: impl Into<String>) -> Self {
        UserError {
            message: message.into(),
            hint: None,
            causes: Vec::new(),
        }
    }

    /// A user error from a library error, keeping its chain of causes;
    /// causes whose text the message already shows are left out.
    pub fn from_error(error: &(dyn std::error::Error + 'static)) -> Self {
        let message = error.to_string();
        let mut causes: Vec<String> = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) && !causes.iter().any(|c| c.contains(&text)) {
                causes.push(text);
            }
            source = cause.source();
        }
        UserError {
            message,
            hint: None,
            causes,
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

impl std::error::Error for UserError {}

/// The command ran to the end and found a problem it already reported.
#[derive(Debug)]
pub struct ProblemFound(pub String);

impl fmt::Display for ProblemFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProblemFound {}

/// Prints `error` for the user and returns the exit code it deserves.
pub fn report(error: &anyhow::Error) -> ExitCode {
    let code = if let Some(user) = error.downcast_ref::<UserError>() {
        eprintln!("error: {user}");
        for cause in &user.causes {
            eprintln!("  caused by: {cause}");
        }
        if let Some(hint) = &user.hint {
            eprintln!("hint: {hint}");
        }
        USER_ERROR
    } else if let Some(problem) = error.downcast_ref::<ProblemFound>() {
        eprintln!("error: {problem}");
        PROBLEM_FOUND
    } else {
        eprintln!("error: {error}");
        for cause in error.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        INTERNAL_ERROR
    };
    ExitCode::from(code)
}
