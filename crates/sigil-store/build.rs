// `sqlx::migrate!` embeds the migration files at compile time; without this, a new migration
// file does not rebuild the crate and a stale binary runs without it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
