//! Compresses the documentation pages' scripts and styles (3 MB) with gzip into OUT_DIR: the
//! binary carries them compressed, which keeps the root function's package small.

use std::io::Write;
use std::path::Path;

const ASSETS: [&str; 3] = ["swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"];

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    for name in ASSETS {
        let source = Path::new("assets").join(name);
        println!("cargo:rerun-if-changed={}", source.display());
        let bytes = std::fs::read(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes).expect("compressing to memory");
        let gz = gz.finish().expect("compressing to memory");
        std::fs::write(Path::new(&out).join(format!("{name}.gz")), gz).expect("writing OUT_DIR");
    }
}
