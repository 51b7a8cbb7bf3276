//! Rebuilds the crate when a migration is added or edited: `sqlx::migrate!` embeds the files at
//! compile time but cargo does not otherwise watch the `migrations/` directory.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
