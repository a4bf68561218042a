//! What `ferry netboot check` says about a wrong `netboot.yaml`: the file's
//! name (not `<input>`), one `error:`, the path of a mapping that lacks a
//! required field, and the template expression that is undefined. (No
//! network, no VM: unlike the `netboot` module, safe to run anywhere.)

use crate::{ferry, run};

#[test]
fn config_errors_name_the_file_the_place_and_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("media")).unwrap();
    std::fs::write(dir.join("media/vmlinuz"), b"kernel").unwrap();
    std::fs::write(dir.join("media/initrd.img"), b"initrd").unwrap();
    let profile = "profiles:\n  k:\n    source: {dir: media}\n    kernel: vmlinuz\n    initrd: [initrd.img]\n";
    let host = "hosts:\n  - mac: 52:54:00:12:34:56\n    profile: k\n";
    let cases = [
        (
            "no-server.yaml",
            format!("# the lab\n\n{profile}    cmdline: x\n"),
        ),
        (
            "no-cmdline.yaml",
            format!("server: {{address: 10.0.0.2}}\n{profile}"),
        ),
        (
            "no-netmask.yaml",
            format!(
                "server: {{address: 10.0.0.2}}\ndhcp:\n  mode: full\n  pool:\n    start: 10.0.0.5\n    end: 10.0.0.9\n{profile}    cmdline: x\n"
            ),
        ),
        (
            "typo.yaml",
            format!("server: {{address: 10.0.0.2}}\n{profile}    cmdlin: x\n"),
        ),
        (
            "undefined.yaml",
            format!(
                "server: {{address: 10.0.0.2}}\n{profile}    cmdline: \"token={{{{ vars.tokne }}}} role={{{{ host.labels.role | upper }}}}\"\n{host}"
            ),
        ),
    ];
    let mut said = String::new();
    for (name, yaml) in cases {
        std::fs::write(dir.join(name), yaml).unwrap();
        let out = run(ferry()
            .current_dir(dir)
            .args(["netboot", "check", "-c", name]));
        said.push_str(&format!(
            "$ ferry netboot check -c {name}\nexit {}\n{}\n",
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    insta::assert_snapshot!(said);
}
