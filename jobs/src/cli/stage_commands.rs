//! The stages' subcommands, made from [`crate::stages::registry`]: each stage's command words,
//! help and flags become a clap subcommand (`ebroker clean`, `ebroker publish greenplum`),
//! and the parsed flags become its [`StageContext`]. A new stage gets its subcommand from
//! its registry line alone.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::ReportFormat;
use crate::stages::{registry, Flag, Stage};
use crate::ProcessingDate;

/// A stage's subcommand as parsed: which stage, and its flags.
#[derive(Debug)]
pub struct StageInvocation {
    pub stage: &'static str,
    pub date: Option<ProcessingDate>,
    pub input: Option<PathBuf>,
    pub force: bool,
    pub format: ReportFormat,
    /// `generate.*` settings given as flags, as configuration overrides.
    pub overrides: Vec<(String, String)>,
}

/// Adds every stage's subcommand to `cli`, grouping two-word commands under their first word.
pub fn add_to(mut cli: Command) -> Command {
    let stages = registry();
    for stage in &stages {
        if let [word] = stage.command() {
            cli = cli.subcommand(subcommand(stage.as_ref(), word));
        }
    }
    let mut groups: Vec<&str> = stages
        .iter()
        .filter(|s| s.command().len() == 2)
        .map(|s| s.command()[0])
        .collect();
    groups.dedup();
    for group in groups {
        let mut parent = Command::new(group)
            .about(format!("Run the {group} stages one at a time"))
            .subcommand_required(true)
            .arg_required_else_help(true);
        for stage in stages
            .iter()
            .filter(|s| s.command().first() == Some(&group) && s.command().len() == 2)
        {
            parent = parent.subcommand(subcommand(stage.as_ref(), stage.command()[1]));
        }
        cli = cli.subcommand(parent);
    }
    cli
}

/// The stage invocation in `matches`, if its subcommand is a stage's.
pub fn find(matches: &ArgMatches) -> Option<StageInvocation> {
    let (word, sub) = matches.subcommand()?;
    for stage in registry() {
        let args = match stage.command() {
            [only] if *only == word => Some(sub),
            [first, second] if *first == word => sub.subcommand().filter(|(w, _)| w == second).map(|(_, m)| m),
            _ => None,
        };
        if let Some(args) = args {
            return Some(invocation(stage.name(), stage.flags(), args));
        }
    }
    None
}

fn subcommand(stage: &dyn Stage, word: &'static str) -> Command {
    let about = stage.about();
    let short = about.split_once(": ").map_or(about, |(first, _)| first);
    let mut command = Command::new(word)
        .about(short.to_string())
        .long_about(about.to_string());
    for flag in stage.flags() {
        command = command.args(args(*flag));
    }
    if stage.flags().contains(&Flag::Input) && stage.flags().contains(&Flag::Generator) {
        // Either sources are given, or they are generated.
        command = command.mut_arg("input", |a| a.conflicts_with("clients"));
    }
    command
}

fn args(flag: Flag) -> Vec<Arg> {
    match flag {
        Flag::Date => vec![Arg::new("date")
            .long("date")
            .value_name("YYYY-MM-DD")
            .value_parser(parse_date)
            .help("Processing date; default: today (UTC)")],
        Flag::Input => vec![Arg::new("input")
            .long("input")
            .value_name("DIR")
            .value_parser(clap::value_parser!(PathBuf))
            .help("Directory with the seven CSV files (clients.csv, bank_transactions.csv, ...): a local path, or a URL every executor reads (file:// on a shared file system, hdfs://, s3://); with --cluster a local path is uploaded to the warehouse's raw zone first")],
        Flag::Out => vec![Arg::new("out")
            .long("out")
            .value_name("DIR")
            .required(true)
            .value_parser(clap::value_parser!(PathBuf))
            .help("Directory to write the CSV files into")],
        Flag::Generator => vec![
            Arg::new("clients")
                .long("clients")
                .value_name("N")
                .value_parser(clap::value_parser!(u64))
                .help("Number of clients (default generate.clients); the other tables follow SPEC §2's proportions"),
            Arg::new("seed")
                .long("seed")
                .value_name("N")
                .value_parser(clap::value_parser!(u64))
                .help("Seed (default generate.seed): the same seed and date give byte-identical files"),
            Arg::new("dirty")
                .long("dirty")
                .value_name("FRACTION")
                .value_parser(clap::value_parser!(f64))
                .help("Fraction of records with dirt (duplicates, bad values, broken lines), 0..1 (default generate.dirty)"),
        ],
        Flag::Force => vec![Arg::new("force")
            .long("force")
            .action(ArgAction::SetTrue)
            .help("Redo the date even though it is complete (ingest: re-read its recorded offset ranges)")],
        Flag::Format => vec![Arg::new("format")
            .long("format")
            .value_parser(clap::value_parser!(ReportFormat))
            .default_value("table")
            .help("How to print the result tables")],
    }
}

fn invocation(stage: &'static str, flags: &[Flag], args: &ArgMatches) -> StageInvocation {
    let has = |flag| flags.contains(&flag);
    let path = |name: &str| args.get_one::<PathBuf>(name).cloned();
    let mut overrides = Vec::new();
    if has(Flag::Generator) {
        for key in ["clients", "seed"] {
            if let Some(value) = args.get_one::<u64>(key) {
                overrides.push((format!("generate.{key}"), value.to_string()));
            }
        }
        if let Some(dirty) = args.get_one::<f64>("dirty") {
            overrides.push(("generate.dirty".into(), format!("{dirty:?}")));
        }
    }
    StageInvocation {
        stage,
        date: has(Flag::Date)
            .then(|| args.get_one::<ProcessingDate>("date").copied())
            .flatten(),
        input: if has(Flag::Out) {
            path("out")
        } else if has(Flag::Input) {
            path("input")
        } else {
            None
        },
        force: has(Flag::Force) && args.get_flag("force"),
        format: has(Flag::Format)
            .then(|| args.get_one::<ReportFormat>("format").copied())
            .flatten()
            .unwrap_or(ReportFormat::Table),
        overrides,
    }
}

/// Parses `YYYY-MM-DD` strictly (for clap).
pub fn parse_date(text: &str) -> Result<ProcessingDate, String> {
    ProcessingDate::parse(text).map_err(|e| e.to_string())
}
