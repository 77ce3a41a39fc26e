//! The bundled example mesh (the repository's `examples/`), compiled into the binary so
//! `weft up` with no directory works from anywhere. [`write_to`] puts the files in a
//! directory for `weft control` to read.

use std::path::Path;

/// `(file name, content)` of each bundled manifest.
pub const FILES: &[(&str, &str)] = &[
    (
        "cluster.yaml",
        include_str!("../../../examples/cluster.yaml"),
    ),
    (
        "frontend.yaml",
        include_str!("../../../examples/frontend.yaml"),
    ),
    ("legacy.yaml", include_str!("../../../examples/legacy.yaml")),
    (
        "reviews.yaml",
        include_str!("../../../examples/reviews.yaml"),
    ),
    ("shop.yaml", include_str!("../../../examples/shop.yaml")),
];

/// Writes the bundled manifests into `dir` (created if missing).
///
/// # Errors
/// The directory or a file cannot be written.
pub fn write_to(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in FILES {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}
