//! Kubernetes manifests pointed at the target: each `image` value that
//! names an image the bundle carries is replaced by where the push put it,
//! and every other byte (comments, order, quoting, layout) stays as the
//! vendor wrote it.
//!
//! The values are found by parsing, not by matching lines: granit-parser
//! (the YAML 1.2 parser serde-saphyr is built on) reports each scalar's
//! byte span, so block and flow style, plain and quoted scalars, several
//! documents per file, `List` kinds and JSON (which is YAML's flow style)
//! are all read the same way, and the new reference is spliced into the
//! old one's span in the same quoting. The result is parsed again and its
//! `image` values compared with the intended ones, so a splice can never
//! leave a file that means something else.
//!
//! Left as they are, each with a warning naming the file and line:
//! templates (`{{ ... }}` is Go/Helm template syntax: what it renders to is
//! not known here), files that are not UTF-8 or do not parse, images the
//! bundle does not carry (relocating them would point at something never
//! pushed), and `image` values that are not one plain reference (aliases,
//! block scalars, mappings).

use std::ops::Range;

use ferry_oci::Reference;
use granit_parser::{Event, Parser, ScalarStyle};

use super::Warning;
use super::catalog::Catalog;

/// A manifest file after relocation.
#[derive(Debug)]
pub(crate) struct Relocated {
    pub bytes: Vec<u8>,
    pub warnings: Vec<Warning>,
}

/// Relocates the `image` values of the file `name` (for warnings).
pub(crate) fn relocate(name: &str, bytes: &[u8], catalog: &Catalog) -> Relocated {
    let unchanged = |line: Option<usize>, message: String| Relocated {
        bytes: bytes.to_vec(),
        warnings: vec![Warning::at(name, line, message)],
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return unchanged(None, "not UTF-8 text; left as it is".into());
    };
    if let Some(at) = text.find("{{") {
        return unchanged(
            Some(line_of(text, at)),
            "a template (`{{`); left as it is: relocate the values it is rendered with, or render it before `ferry bundle create`".into(),
        );
    }
    let values = match image_values(text) {
        Ok(values) => values,
        Err((line, why)) => {
            return unchanged(Some(line), format!("does not parse ({why}); left as it is"));
        }
    };
    let mut warnings = Vec::new();
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    // What each image value should read after the edits, in file order.
    let mut intended = Vec::new();
    for value in values {
        let warn = |message: String| Warning::at(name, Some(value.line), message);
        let ImageValue::Scalar { span, text, style } = &value.kind else {
            warnings.push(warn(
                "an image that is not one plain reference (an alias, a mapping or a sequence); left as it is".into(),
            ));
            intended.push(None);
            continue;
        };
        intended.push(Some(text.clone()));
        let quote = match style {
            ScalarStyle::Plain => "",
            ScalarStyle::SingleQuoted => "'",
            ScalarStyle::DoubleQuoted => "\"",
            _ => {
                warnings.push(warn(format!(
                    "image {text:?} is a block scalar; left as it is"
                )));
                continue;
            }
        };
        let reference: Reference = match text.parse() {
            Ok(r) => r,
            Err(e) => {
                warnings.push(warn(format!("{e}; left as it is")));
                continue;
            }
        };
        let Some(relocated) = catalog.relocate(&reference) else {
            warnings.push(warn(format!(
                "image {text} is not in the bundle; left as it is"
            )));
            continue;
        };
        let relocated = relocated.to_string();
        // A plain scalar cannot start with `[` (an IPv6 target host): it
        // would open a flow sequence.
        let quote = if quote.is_empty() && relocated.starts_with('[') {
            "\""
        } else {
            quote
        };
        edits.push((span.clone(), format!("{quote}{relocated}{quote}")));
        *intended.last_mut().expect("pushed above") = Some(relocated);
    }
    let mut out = text.to_string();
    for (span, replacement) in edits.iter().rev() {
        out.replace_range(span.clone(), replacement);
    }
    let check: Option<Vec<Option<String>>> = image_values(&out).ok().map(|values| {
        values
            .into_iter()
            .map(|v| match v.kind {
                ImageValue::Scalar { text, .. } => Some(text),
                ImageValue::Other => None,
            })
            .collect()
    });
    if check.as_ref() != Some(&intended) {
        return unchanged(
            None,
            "relocating its images would change what the file means; left as it is".into(),
        );
    }
    Relocated {
        bytes: out.into_bytes(),
        warnings,
    }
}

/// One `image` key's value.
struct FoundImage {
    /// 1-based line of the `image` key.
    line: usize,
    kind: ImageValue,
}

enum ImageValue {
    /// A scalar: its source span (quotes included), value and style.
    Scalar {
        span: Range<usize>,
        text: String,
        style: ScalarStyle,
    },
    /// An alias or a collection.
    Other,
}

/// Where a node sits in its parent collection.
enum Frame {
    Sequence,
    /// A mapping; `expect_key` when the next node is a key, `image_key`
    /// (its line) when it is the value of an `image` key.
    Mapping {
        expect_key: bool,
        image_key: Option<usize>,
    },
}

/// Every `image` key's value in every document of `text`, in order; or the
/// line and reason it does not parse.
fn image_values(text: &str) -> Result<Vec<FoundImage>, (usize, String)> {
    let mut found = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| (e.marker().line(), e.info()))?;
        let line = span.start.line();
        let node = match &event {
            Event::Scalar(value, style, ..) => Some(Some((value.to_string(), *style))),
            Event::Alias(_) | Event::SequenceStart(..) | Event::MappingStart(..) => Some(None),
            _ => None,
        };
        if let Some(scalar) = node
            && let Some(Frame::Mapping {
                expect_key,
                image_key,
            }) = stack.last_mut()
        {
            if *expect_key {
                *image_key = scalar
                    .as_ref()
                    .is_some_and(|(key, _)| key == "image")
                    .then_some(line);
            } else if let Some(line) = *image_key {
                let kind = match scalar {
                    Some((text, style)) => ImageValue::Scalar {
                        span: span.byte_range().expect("a string input has byte offsets"),
                        text,
                        style,
                    },
                    None => ImageValue::Other,
                };
                found.push(FoundImage { line, kind });
            }
            *expect_key = !*expect_key;
        }
        match event {
            Event::SequenceStart(..) => stack.push(Frame::Sequence),
            Event::MappingStart(..) => stack.push(Frame::Mapping {
                expect_key: true,
                image_key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    Ok(found)
}

/// The 1-based line holding byte `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at].bytes().filter(|b| *b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::super::catalog::Placed;
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn catalog(registry: &str) -> Catalog {
        let placed = |source: &str, repository: &str, tag: &str| Placed {
            source: source.parse().unwrap(),
            repository: repository.into(),
            tag: Some(tag.into()),
            root: D.parse().unwrap(),
            manifests: [D.parse().unwrap()].into(),
        };
        Catalog {
            registry: registry.into(),
            placed: vec![
                placed("nginx:1.27", "m/library/nginx", "1.27"),
                placed("quay.io/org/app:2.0", "m/org/app", "2.0"),
            ],
        }
    }

    fn run(text: &str) -> (String, Vec<String>) {
        let r = relocate("f.yaml", text.as_bytes(), &catalog("reg.site:5000"));
        (
            String::from_utf8(r.bytes).unwrap(),
            r.warnings.iter().map(|w| w.to_string()).collect(),
        )
    }

    #[test]
    fn every_style_is_relocated_in_its_own_quoting() {
        let text = format!(
            "# keep me\nspec:\n  containers:\n  - name: web\n    image: nginx:1.27 # pinned\n  - image: \"quay.io/org/app:2.0\"\n  - {{name: x, image: 'nginx@{D}'}}\n---\nitems: [{{\"image\": \"quay.io/org/app:2.0\"}}]\n"
        );
        let (out, warnings) = run(&text);
        assert_eq!(
            out,
            format!(
                "# keep me\nspec:\n  containers:\n  - name: web\n    image: reg.site:5000/m/library/nginx:1.27 # pinned\n  - image: \"reg.site:5000/m/org/app:2.0\"\n  - {{name: x, image: 'reg.site:5000/m/library/nginx@{D}'}}\n---\nitems: [{{\"image\": \"reg.site:5000/m/org/app:2.0\"}}]\n"
            )
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn only_image_values_are_touched() {
        let text = "image: nginx:1.27\nname: nginx:1.27\nargs: [nginx:1.27]\nimage:\n  nested: nginx:1.27\nnginx:1.27: image\n";
        let (out, warnings) = run(text);
        assert_eq!(
            out,
            text.replacen("nginx:1.27", "reg.site:5000/m/library/nginx:1.27", 1)
        );
        assert_eq!(
            warnings,
            [
                "f.yaml:4: an image that is not one plain reference (an alias, a mapping or a sequence); left as it is"
            ]
        );
    }

    #[test]
    fn what_cannot_be_relocated_is_named() {
        let (out, warnings) =
            run("a:\n  image: busybox:1.36\n  b:\n    image: |\n      nginx:1.27\n");
        assert!(out.contains("busybox:1.36") && out.contains("      nginx:1.27"));
        assert_eq!(
            warnings,
            [
                "f.yaml:2: image busybox:1.36 is not in the bundle; left as it is",
                "f.yaml:4: image \"nginx:1.27\\n\" is a block scalar; left as it is",
            ]
        );
        let template = "spec:\n  image: nginx:1.27\n  x: {{ .Values.image }}\n";
        let (out, warnings) = run(template);
        assert_eq!(out, template);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("f.yaml:3: a template"),
            "{warnings:?}"
        );
        let broken = "a: b\n  c: [d\n";
        let (out, warnings) = run(broken);
        assert_eq!(out, broken);
        assert!(
            warnings[0].starts_with("f.yaml:2: does not parse"),
            "{warnings:?}"
        );
    }

    #[test]
    fn json_with_tabs_crlf_and_a_bom() {
        let text =
            "\u{feff}{\r\n\t\"spec\": {\"containers\": [{\"image\": \"nginx:1.27\"}]}\r\n}\r\n";
        let (out, warnings) = run(text);
        assert_eq!(
            out,
            text.replace("\"nginx:1.27\"", "\"reg.site:5000/m/library/nginx:1.27\"")
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn an_ipv6_target_is_quoted_where_plain_would_change_the_meaning() {
        let r = relocate(
            "f.yaml",
            b"- {image: nginx:1.27}\n- image: nginx:1.27\n",
            &catalog("[::1]:5000"),
        );
        assert_eq!(
            String::from_utf8(r.bytes).unwrap(),
            "- {image: \"[::1]:5000/m/library/nginx:1.27\"}\n- image: \"[::1]:5000/m/library/nginx:1.27\"\n"
        );
    }
}
