use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = stratus::cli::Cli::parse();
    if let Err(message) = stratus::cli::run(cli).await {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
