//! The profile templates: kernel command line and user-data (minijinja).
//!
//! Every profile's templates are compiled once, at load, into one
//! environment; a syntax error is a configuration error that names the
//! profile, the template and its line in the config file. Undefined
//! variables are errors too (`UndefinedBehavior::Strict`): a typo in
//! `{{ vars.tokne }}` must stop a boot with a message, not install a host
//! with an empty registration token. [`Templates::check_hosts`] renders
//! every template for every listed host (and once for the default profile)
//! at load, so most such errors show up before any machine boots.
//!
//! What templates see ([`Context`]):
//! `host.mac`, `host.name` (the configured name, else `host-<mac>`),
//! `host.labels`, `host.vars`, `host.bootif` (`01-52-54-...`, the
//! pxelinux-style `BOOTIF=` value), `host.arch`, `host.uuid`;
//! `profile`; `site` (site variables); `vars` (site ⊕ profile ⊕ host
//! variables, later ones win); `server` (`http://IP:PORT`); `config_url`
//! and `events_url` (the host's own token URLs); `files.<name>` (URL of
//! each file of the profile: `files.kernel`, `files.initrd`,
//! `files.rootfs`, ...).

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::config::LoadedConfig;
use crate::mac::MacAddr;

/// Which template of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Cmdline,
    UserData,
}

impl Which {
    fn key(self) -> &'static str {
        match self {
            Which::Cmdline => "cmdline",
            Which::UserData => "user_data",
        }
    }
}

/// A template failed to compile or render.
#[derive(Debug, Clone, thiserror::Error)]
#[error("profile `{profile}` {which}: {message}")]
pub struct TemplateError {
    pub profile: String,
    pub which: &'static str,
    pub message: String,
}

/// The host as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct HostContext {
    pub mac: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub vars: BTreeMap<String, serde_json::Value>,
    pub bootif: String,
    pub arch: String,
    pub uuid: String,
}

/// Everything a template can use.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub host: HostContext,
    pub profile: String,
    pub site: BTreeMap<String, serde_json::Value>,
    pub vars: BTreeMap<String, serde_json::Value>,
    pub server: String,
    pub config_url: String,
    pub events_url: String,
    pub files: BTreeMap<String, String>,
}

/// Inputs for [`Context::build`] that come from the request.
pub struct ContextInputs<'a> {
    pub mac: MacAddr,
    pub profile: &'a str,
    pub base_url: &'a str,
    pub token: &'a str,
    pub file_names: Vec<String>,
    pub arch: &'a str,
    pub uuid: &'a str,
}

impl Context {
    pub fn build(config: &LoadedConfig, inputs: ContextInputs<'_>) -> Context {
        let host = config.host(&inputs.mac);
        let site = config.config.vars.clone();
        let mut vars = site.clone();
        if let Some(p) = config.config.profiles.get(inputs.profile) {
            vars.extend(p.vars.clone());
        }
        let host_vars = host.map(|h| h.vars.clone()).unwrap_or_default();
        vars.extend(host_vars.clone());
        let host_url = format!("{}/h/{}", inputs.base_url, inputs.token);
        Context {
            host: HostContext {
                mac: inputs.mac.to_string(),
                name: host
                    .and_then(|h| h.name.clone())
                    .unwrap_or_else(|| format!("host-{}", inputs.mac.hyphenated())),
                labels: host.map(|h| h.labels.clone()).unwrap_or_default(),
                vars: host_vars,
                bootif: format!("01-{}", inputs.mac.hyphenated()),
                arch: inputs.arch.to_string(),
                uuid: inputs.uuid.to_string(),
            },
            profile: inputs.profile.to_string(),
            site,
            vars,
            server: inputs.base_url.to_string(),
            config_url: format!("{host_url}/config"),
            events_url: format!("{host_url}/events"),
            files: inputs
                .file_names
                .into_iter()
                .map(|n| {
                    let url = format!("{host_url}/files/{n}");
                    (n, url)
                })
                .collect(),
        }
    }
}

/// The compiled templates of every profile.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Compiles every profile's templates; returns every syntax error.
    pub fn compile(config: &LoadedConfig) -> Result<Templates, Vec<String>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Keeps each template's source and the span of a failing
        // expression, so that an error can quote it (`vars.tokne`).
        env.set_debug(true);
        env.set_keep_trailing_newline(true);
        let mut problems = Vec::new();
        for (name, profile) in &config.config.profiles {
            let cmdline_line = profile.cmdline.referenced.line();
            let mut sources = vec![(Which::Cmdline, profile.cmdline.value.clone(), cmdline_line)];
            if let Some(ud) = &profile.user_data {
                sources.push((Which::UserData, ud.value.clone(), ud.referenced.line()));
            } else if let Some(text) = config.user_data_files.get(name) {
                sources.push((Which::UserData, text.clone(), 0));
            }
            for (which, source, config_line) in sources {
                if let Err(e) = env.add_template_owned(template_name(name, which), source) {
                    let place = if config_line > 0 {
                        format!("template starting at config line {config_line}")
                    } else {
                        profile
                            .user_data_file
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    };
                    problems.push(format!(
                        "profiles.{name}.{}: {} ({place})",
                        which.key(),
                        describe(&e)
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(Templates { env })
        } else {
            Err(problems)
        }
    }

    /// Renders a profile's template. `Ok(None)` if the profile has no such
    /// template (no user-data).
    pub fn render(
        &self,
        profile: &str,
        which: Which,
        context: &Context,
    ) -> Result<Option<String>, TemplateError> {
        let Ok(template) = self.env.get_template(&template_name(profile, which)) else {
            return Ok(None);
        };
        let text = template.render(context).map_err(|e| TemplateError {
            profile: profile.to_string(),
            which: which.key(),
            message: describe(&e),
        })?;
        Ok(Some(match which {
            // one line for iPXE's `kernel`: newlines and runs of blanks from
            // a multi-line YAML block become single spaces
            Which::Cmdline => text.split_whitespace().collect::<Vec<_>>().join(" "),
            Which::UserData => text,
        }))
    }

    /// Renders every template for every listed host and once for an
    /// unknown host of the default profile, with placeholder URLs;
    /// returns every error.
    pub fn check_hosts(
        &self,
        config: &LoadedConfig,
        file_names: &dyn Fn(&str) -> Vec<String>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |mac: MacAddr, profile: &str, who: String| {
            let context = Context::build(
                config,
                ContextInputs {
                    mac,
                    profile,
                    base_url: "http://192.0.2.1:8080",
                    token: "TOKEN",
                    file_names: file_names(profile),
                    arch: "x86_64",
                    uuid: "00000000-0000-0000-0000-000000000000",
                },
            );
            for which in [Which::Cmdline, Which::UserData] {
                if let Err(e) = self.render(profile, which, &context) {
                    problems.push(format!("{who}: {e}"));
                }
            }
        };
        for (i, host) in config.config.hosts.iter().enumerate() {
            if let Some(profile) = config.profile_for(&host.mac) {
                check(host.mac, profile, format!("hosts[{i}] ({})", host.mac));
            }
        }
        if let Some(default) = &config.config.default_profile {
            // a MAC no host has: what an unknown machine renders
            check(
                MacAddr([0x02, 0, 0, 0, 0, 0]),
                &default.value,
                "an unknown host (default_profile)".to_string(),
            );
        }
        problems
    }
}

fn template_name(profile: &str, which: Which) -> String {
    format!("{profile}/{}", which.key())
}

/// "`vars.tokne` is undefined (template line 2)", "syntax error: ... (template
/// line 1)" from a minijinja error: the failing expression quoted when
/// minijinja knows it.
fn describe(e: &minijinja::Error) -> String {
    let quoted = e
        .template_source()
        .zip(e.range())
        .and_then(|(source, range)| {
            Some((
                source.get(range.clone())?.trim(),
                tag_around(source, range)?,
            ))
        })
        .filter(|(x, _)| !x.is_empty());
    let is_path = |x: &str| {
        x.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    };
    let mut text = match (e.kind(), quoted) {
        // `{{ vars.tokne }}`: the variable itself
        (minijinja::ErrorKind::UndefinedError, Some((x, tag)))
            if is_path(x) && !tag.contains('|') =>
        {
            format!("`{x}` is undefined")
        }
        // `{{ vars.role | upper }}`: minijinja points at the filter that
        // got the undefined value; the whole tag says which one it was
        (kind, Some((_, tag))) => format!("{kind} in `{tag}`"),
        (kind, None) => kind.to_string(),
    };
    if let Some(detail) = e.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    if let Some(line) = e.line() {
        text.push_str(&format!(" (template line {line})"));
    }
    text
}

/// The `{{ ... }}` or `{% ... %}` tag of `source` that holds `range`.
fn tag_around(source: &str, range: std::ops::Range<usize>) -> Option<&str> {
    let before = source.get(..range.start)?;
    let start = before
        .rfind("{{")
        .into_iter()
        .chain(before.rfind("{%"))
        .max()?;
    let after = source.get(range.end..)?;
    let end = ["}}", "%}"]
        .iter()
        .filter_map(|close| after.find(close))
        .min()?;
    source.get(start..range.end + end + 2)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn load(yaml: &str) -> LoadedConfig {
        Config::parse(yaml, Path::new("netboot.yaml"), Path::new("/")).unwrap()
    }

    const BASE: &str = "server: {address: 10.0.0.2}\nvars: {registry: reg.local, token: s3cret}\n";

    #[test]
    fn renders_cmdline_and_user_data_with_merged_variables() {
        let config = load(&format!(
            "{BASE}profiles:\n  k:\n    source: {{dir: /}}\n    vars: {{role: worker, token: profile}}\n    cmdline: |\n      console=ttyS0\n      config_url={{{{ config_url }}}}   root=live:{{{{ files.rootfs }}}}\n      role={{{{ vars.role }}}} {{{{ host.bootif }}}}\n    user_data: |\n      #cloud-config\n      hostname: {{{{ host.name }}}}\n      token: {{{{ vars.token }}}} {{{{ site.token }}}}\nhosts:\n  - mac: 52:54:00:12:34:56\n    name: node1\n    profile: k\n    vars: {{role: control-plane}}\n"
        ));
        let templates = Templates::compile(&config).unwrap();
        let mac: MacAddr = "52:54:00:12:34:56".parse().unwrap();
        let ctx = Context::build(
            &config,
            ContextInputs {
                mac,
                profile: "k",
                base_url: "http://10.0.0.2:8080",
                token: "abc",
                file_names: vec!["kernel".into(), "rootfs".into()],
                arch: "x86_64",
                uuid: "",
            },
        );
        let cmdline = templates
            .render("k", Which::Cmdline, &ctx)
            .unwrap()
            .unwrap();
        assert_eq!(
            cmdline,
            "console=ttyS0 config_url=http://10.0.0.2:8080/h/abc/config root=live:http://10.0.0.2:8080/h/abc/files/rootfs role=control-plane 01-52-54-00-12-34-56"
        );
        let ud = templates
            .render("k", Which::UserData, &ctx)
            .unwrap()
            .unwrap();
        assert_eq!(
            ud,
            "#cloud-config\nhostname: node1\ntoken: profile s3cret\n"
        );
        assert!(
            templates
                .check_hosts(&config, &|_| vec!["rootfs".into()])
                .is_empty()
        );
    }

    #[test]
    fn syntax_errors_name_profile_and_line() {
        let config = load(&format!(
            "{BASE}profiles:\n  broken:\n    source: {{dir: /}}\n    cmdline: \"a {{% if %}}\"\n"
        ));
        let problems = Templates::compile(&config).err().unwrap();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("profiles.broken.cmdline: syntax error"),
            "{}",
            problems[0]
        );
        assert!(problems[0].contains("config line 6"), "{}", problems[0]);
    }

    #[test]
    fn undefined_variables_are_errors_found_at_load() {
        let config = load(&format!(
            "{BASE}default_profile: k\nprofiles:\n  k:\n    source: {{dir: /}}\n    cmdline: \"x={{{{ vars.tokne }}}}\"\n"
        ));
        let templates = Templates::compile(&config).unwrap();
        let problems = templates.check_hosts(&config, &|_| Vec::new());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("`vars.tokne` is undefined (template line 1)"),
            "{}",
            problems[0]
        );
        assert!(problems[0].contains("unknown host"), "{}", problems[0]);
    }
}
