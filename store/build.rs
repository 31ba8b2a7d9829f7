//! The migrations are embedded at compile time (`refinery::embed_migrations!`), which does
//! not tell Cargo it read them: without this, a new migration was left out of a build
//! that reused its target directory.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
