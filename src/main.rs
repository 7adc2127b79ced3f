fn main() {
    std::process::exit(flow::cli::main());
}
