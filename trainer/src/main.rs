//! `fira`: pre-train, inspect and benchmark the GaLore/Fira LLaMA with Fira on Burn.

fn main() {
    std::process::exit(trainer::run_cli());
}
