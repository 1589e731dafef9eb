//! docs/api/agent.yaml documents every route the agent serves: each
//! `.route("PATH", ...)` in the agent's source must be a path there.

use std::path::Path;

fn routes_in(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            routes_in(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            // `.route("/path", ...)`, also split over lines.
            for piece in text.split(".route(").skip(1) {
                let quoted = piece.trim_start().strip_prefix('"');
                if let Some(path) = quoted.and_then(|q| q.split('"').next()) {
                    out.push(path.to_string());
                }
            }
        }
    }
}

#[test]
fn every_route_is_in_the_openapi_file() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut routes = Vec::new();
    routes_in(&crate_dir.join("src"), &mut routes);
    assert!(routes.len() >= 30, "{routes:?}");
    let spec = std::fs::read_to_string(crate_dir.join("../../docs/api/agent.yaml")).unwrap();
    let missing: Vec<&String> = routes
        .iter()
        .filter(|r| !spec.contains(&format!("\n  {r}:\n")))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from docs/api/agent.yaml: {missing:?}"
    );
}
