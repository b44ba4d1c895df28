//! `detc graph FILE`: the model's module graph as DOT.

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: super::ConfigArgs,
}

pub fn exec(args: Args) -> std::io::Result<i32> {
    let (sources, result) = super::compile(&args.config, super::Checks::None);
    match result {
        Ok(tree) => {
            let (graph, errors) = crate::graph::build(&tree);
            if !errors.is_empty() {
                super::report(&errors, &sources);
            }
            super::print_stdout(&crate::graph::to_dot(&graph))?;
            Ok(if errors.is_empty() { super::EXIT_OK } else { super::EXIT_INPUT })
        }
        Err(diags) => {
            super::report(&diags, &sources);
            Ok(super::EXIT_INPUT)
        }
    }
}
