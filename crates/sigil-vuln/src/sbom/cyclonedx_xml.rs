//! CycloneDX XML, spec versions 1.4 to 1.6: the same fields the JSON reader takes (components,
//! nested ones too, and `metadata/component`), read from the schema's namespace.
//!
//! roxmltree builds a read-only tree and refuses any DTD, so no entity is expanded and nothing
//! is fetched (no billion laughs, no XXE); the node count is bounded as well. Elements of other
//! namespaces (extensions) are ignored, as unknown JSON fields are.

use roxmltree::{Document, Node, ParsingOptions};

use super::{Component, Sbom, SbomFormat, checked_text, purl_problem};
use crate::VulnError;

const NAMESPACE_PREFIX: &str = "http://cyclonedx.org/schema/bom/";
const VERSIONS: [&str; 3] = ["1.4", "1.5", "1.6"];
/// Elements, attributes and text nodes together: a 200,000-component SBOM with hashes and
/// licences stays far below.
const MAX_NODES: u32 = 8_000_000;

pub(super) fn parse(text: &str) -> Result<Sbom, VulnError> {
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options).map_err(|e| VulnError::Malformed {
        what: "SBOM",
        line: usize::try_from(e.pos().row).unwrap_or(usize::MAX),
        reason: e.to_string(),
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
    let subject = match reader
        .child(root, "metadata")
        .and_then(|m| reader.child(m, "component"))
    {
        Some(node) => Some(reader.component(node)?),
        None => None,
    };
    // Nested components, depth first, without recursion (the tree is already bounded).
    let mut components = Vec::new();
    let mut stack: Vec<Node<'_, '_>> = reader.listed_components(root);
    stack.reverse();
    while let Some(node) = stack.pop() {
        components.push(reader.component(node)?);
        let mut nested = reader.listed_components(node);
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
    fn child(&self, node: Node<'a, 'input>, name: &str) -> Option<Node<'a, 'input>> {
        node.children().find(|c| self.is_element(*c, name))
    }

    fn is_element(&self, node: Node<'_, '_>, name: &str) -> bool {
        node.is_element()
            && node.tag_name().name() == name
            && node.tag_name().namespace() == Some(self.namespace)
    }

    /// The `component` elements of `node`'s `components` list.
    fn listed_components(&self, node: Node<'a, 'input>) -> Vec<Node<'a, 'input>> {
        self.child(node, "components")
            .map(|list| {
                list.children()
                    .filter(|c| self.is_element(*c, "component"))
                    .collect()
            })
            .unwrap_or_default()
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
        let Some(element) = self.child(node, name) else {
            return Ok(None);
        };
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
