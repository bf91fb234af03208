//! `batonctl certs init|add-node`.

use serde_json::json;

use super::CmdError;
use crate::cli::{CertsCommand, OutputFormat};
use crate::output;
use crate::pki::{self, NodeSpec};

pub fn run(command: CertsCommand, format: OutputFormat) -> Result<(), CmdError> {
    let (dir, written) = match command {
        CertsCommand::Init {
            dir,
            nodes,
            local_nodes,
        } => {
            let specs = match local_nodes {
                Some(n) => (1..=n).map(NodeSpec::local).collect(),
                None => nodes
                    .iter()
                    .map(|s| NodeSpec::parse(s))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let written = pki::init(&dir, &specs)?;
            (dir, written)
        }
        CertsCommand::AddNode { dir, node } => {
            let written = pki::add_node(&dir, &NodeSpec::parse(&node)?)?;
            (dir, written)
        }
    };
    let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    output::print(format, &json!({"dir": dir, "files": files}), || {
        let mut out = format!("wrote {} files to {}:\n", files.len(), dir.display());
        for f in &files {
            out.push_str(&format!("  {f}\n"));
        }
        out.push_str("keep ca.key safe: whoever has it can mint certificates for this cluster\n");
        out
    });
    Ok(())
}
