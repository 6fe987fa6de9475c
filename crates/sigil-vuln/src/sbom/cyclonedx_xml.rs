//! CycloneDX XML, spec versions 1.4 to 1.6: the same fields the JSON reader takes (components,
//! nested ones too, and `metadata/component`), read from the schema's namespace.
//!
//! roxmltree builds a read-only tree and refuses any DTD, so no entity is expanded and nothing
//! is fetched (no billion laughs, no XXE); the node count is bounded as well. What the tree
//! builder does not bound (attributes per element, namespace declarations, which it copies
//! into every element, and depth) a streaming pass with its tokenizer bounds first. Elements
//! of other namespaces (extensions) are ignored, as unknown JSON fields are; a field Sigil
//! reads must appear once and hold plain text, so no other reader sees a different value.

use roxmltree::{Document, Node, ParsingOptions};
use xmlparser::{ElementEnd, Token, Tokenizer};

use super::{Component, Sbom, SbomFormat, checked_text, purl_problem};
use crate::VulnError;

const NAMESPACE_PREFIX: &str = "http://cyclonedx.org/schema/bom/";
const VERSIONS: [&str; 3] = ["1.4", "1.5", "1.6"];
/// Elements, attributes and text nodes together: a 200,000-component SBOM with hashes and
/// licences stays below.
const MAX_NODES: u32 = 2_000_000;
const MAX_ATTRIBUTES_PER_ELEMENT: usize = 64;
const MAX_NAMESPACE_DECLARATIONS: usize = 64;
const MAX_DEPTH: usize = 128;
/// Longest parser message passed on (it may quote the uploader's names).
const MAX_REASON: usize = 200;

fn malformed_at(text: &str, position: usize, reason: String) -> VulnError {
    let before = text.get(..position).unwrap_or(text);
    VulnError::Malformed {
        what: "SBOM",
        line: 1 + before.bytes().filter(|b| *b == b'\n').count(),
        reason,
    }
}

/// The bounds the tree does not keep, and the encoding: UTF-8 only (the bytes were read as
/// UTF-8; a document declaring another encoding would read differently elsewhere).
fn prescan(text: &str) -> Result<(), VulnError> {
    let (mut depth, mut attributes, mut namespaces) = (0usize, 0usize, 0usize);
    for token in Tokenizer::from(text) {
        // Syntax errors are the tree builder's to report, with its position.
        let Ok(token) = token else { return Ok(()) };
        match token {
            Token::Declaration {
                encoding: Some(e),
                span,
                ..
            } if !e.as_str().eq_ignore_ascii_case("utf-8") => {
                return Err(malformed_at(
                    text,
                    span.start(),
                    format!(
                        "the document declares encoding `{}`; Sigil reads UTF-8 only",
                        e.as_str().chars().take(20).collect::<String>()
                    ),
                ));
            }
            Token::ElementStart { span, .. } => {
                attributes = 0;
                depth += 1;
                if depth > MAX_DEPTH {
                    let reason = format!("elements nested deeper than {MAX_DEPTH}");
                    return Err(malformed_at(text, span.start(), reason));
                }
            }
            Token::Attribute {
                prefix,
                local,
                span,
                ..
            } => {
                attributes += 1;
                if prefix.as_str() == "xmlns"
                    || (prefix.as_str().is_empty() && local.as_str() == "xmlns")
                {
                    namespaces += 1;
                }
                if attributes > MAX_ATTRIBUTES_PER_ELEMENT
                    || namespaces > MAX_NAMESPACE_DECLARATIONS
                {
                    let reason = format!(
                        "more than {MAX_ATTRIBUTES_PER_ELEMENT} attributes on an element or {MAX_NAMESPACE_DECLARATIONS} namespace declarations in the document"
                    );
                    return Err(malformed_at(text, span.start(), reason));
                }
            }
            Token::ElementEnd {
                end: ElementEnd::Empty | ElementEnd::Close(..),
                ..
            } => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn parse(text: &str) -> Result<Sbom, VulnError> {
    prescan(text)?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options).map_err(|e| VulnError::Malformed {
        what: "SBOM",
        line: usize::try_from(e.pos().row).unwrap_or(usize::MAX),
        reason: e.to_string().chars().take(MAX_REASON).collect(),
    })?;
    let root = doc.root_element();
    let namespace = root.tag_name().namespace().unwrap_or_default();
    if root.tag_name().name() != "bom" || !namespace.starts_with(NAMESPACE_PREFIX) {
        return Err(VulnError::UnsupportedSbom(
            "an XML document whose root is not a CycloneDX `bom` (namespace http://cyclonedx.org/schema/bom/1.x)".into(),
        ));
    }
    let spec_version = &namespace[NAMESPACE_PREFIX.len()..];
    if !VERSIONS.contains(&spec_version) {
        return Err(VulnError::UnsupportedSbom(format!(
            "CycloneDX XML version `{}` (Sigil reads {})",
            spec_version.chars().take(16).collect::<String>(),
            VERSIONS.join(", ")
        )));
    }
    let reader = Reader {
        doc: &doc,
        namespace,
    };
    let subject = match reader.only_child(root, "metadata")? {
        Some(m) => match reader.only_child(m, "component")? {
            Some(node) => Some(reader.component(node)?),
            None => None,
        },
        None => None,
    };
    // Nested components, depth first, without recursion (the tree is already bounded).
    let mut components = Vec::new();
    let mut stack: Vec<Node<'_, '_>> = reader.listed_components(root)?;
    stack.reverse();
    while let Some(node) = stack.pop() {
        components.push(reader.component(node)?);
        let mut nested = reader.listed_components(node)?;
        nested.reverse();
        stack.extend(nested);
    }
    Ok(Sbom {
        format: SbomFormat::CycloneDx,
        spec_version: spec_version.to_owned(),
        subject,
        components,
    })
}

struct Reader<'a, 'input> {
    doc: &'a Document<'input>,
    namespace: &'a str,
}

impl<'a, 'input> Reader<'a, 'input> {
    fn is_element(&self, node: Node<'_, '_>, name: &str) -> bool {
        node.is_element()
            && node.tag_name().name() == name
            && node.tag_name().namespace() == Some(self.namespace)
    }

    /// The one child element `name` of `node`, if there is one; two are refused.
    fn only_child(
        &self,
        node: Node<'a, 'input>,
        name: &str,
    ) -> Result<Option<Node<'a, 'input>>, VulnError> {
        let mut found = node.children().filter(|c| self.is_element(*c, name));
        let first = found.next();
        if let Some(second) = found.next() {
            return Err(self.refuse(second, format!("a second `{name}` element")));
        }
        Ok(first)
    }

    /// The `component` elements of `node`'s `components` list.
    fn listed_components(
        &self,
        node: Node<'a, 'input>,
    ) -> Result<Vec<Node<'a, 'input>>, VulnError> {
        Ok(self
            .only_child(node, "components")?
            .map(|list| {
                list.children()
                    .filter(|c| self.is_element(*c, "component"))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn line(&self, node: Node<'_, '_>) -> usize {
        usize::try_from(self.doc.text_pos_at(node.range().start).row).unwrap_or(usize::MAX)
    }

    fn refuse(&self, node: Node<'_, '_>, reason: String) -> VulnError {
        VulnError::Malformed {
            what: "SBOM",
            line: self.line(node),
            reason,
        }
    }

    /// A child element's text, trimmed; an empty one counts as absent (as `""` does in JSON).
    fn text(&self, node: Node<'a, 'input>, name: &str) -> Result<Option<String>, VulnError> {
        let Some(element) = self.only_child(node, name)? else {
            return Ok(None);
        };
        // Text only: a comment or an element inside would split the value, and readers
        // differ on which part they take.
        if element.children().any(|c| !c.is_text()) {
            return Err(self.refuse(element, format!("`{name}` must hold text only")));
        }
        let value = element.text().unwrap_or_default().trim();
        if value.is_empty() {
            return Ok(None);
        }
        checked_text(name, value).map_err(|reason| self.refuse(element, reason))?;
        Ok(Some(value.to_owned()))
    }

    fn component(&self, node: Node<'a, 'input>) -> Result<Component, VulnError> {
        let name = self
            .text(node, "name")?
            .ok_or_else(|| self.refuse(node, "a component needs a `name`".into()))?;
        let purl = self.text(node, "purl")?;
        if let Some(problem) = purl.as_deref().and_then(purl_problem) {
            return Err(self.refuse(node, problem));
        }
        let reference = match node.attribute("bom-ref").map(str::trim) {
            None | Some("") => None,
            Some(r) => {
                checked_text("bom-ref", r).map_err(|reason| self.refuse(node, reason))?;
                Some(r.to_owned())
            }
        };
        Ok(Component {
            name,
            version: self.text(node, "version")?,
            purl,
            cpe: self.text(node, "cpe")?,
            reference,
        })
    }
}
