//! Writes the OpenAPI documents into a folder, one file each: `gateway.json` (the public
//! document the gateway serves at `/api/openapi.json`) and `<service>.json` (what each
//! service serves at `/openapi.json`). They are made from the code alone, as the running
//! system makes them (the end-to-end test `openapi` checks that the served document is
//! this one), so nothing needs to run. `scripts/validate-openapi` validates what it writes:
//!
//! ```sh
//! cargo run -q -p system-tests --example openapi -- target/openapi
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

fn main() -> anyhow::Result<()> {
    let folder = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: openapi <folder to write the documents into>")?;
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let services = system::openapi_documents()?;
    for (service, document) in &services {
        write(&folder.join(format!("{service}.json")), document)?;
    }
    let public = api_gateway::public_document(&system::route_tables(), &services)?;
    write(&folder.join("gateway.json"), &public)?;
    Ok(())
}

fn write(path: &Path, document: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(document)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("{}", path.display());
    Ok(())
}
