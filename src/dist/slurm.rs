//! `--launcher slurm`: a worker's environment from the variables `srun` sets.
//!
//! Slurm writes host lists compressed (`node[01-04,07],gpu5`). Expanding them
//! is `scontrol show hostnames`, but that needs Slurm's tools on the compute
//! node and a process per launch; the grammar is small, so it is parsed here.

use super::launch::WorkerEnv;
use super::ports::DEFAULT_PORT;

/// The hosts of a Slurm host list, in order: `node[01-03],gpu5` →
/// `node01 node02 node03 gpu5`; several bracket groups multiply
/// (`r[1-2]-n[1-2]` → `r1-n1 r1-n2 r2-n1 r2-n2`); zero padding is kept.
pub fn expand_nodelist(list: &str) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    for entry in split_top_level(list)? {
        if entry.is_empty() {
            continue;
        }
        hosts.extend(expand_host(entry, list)?);
    }
    if hosts.is_empty() {
        return Err(format!("SLURM_NODELIST `{list}` names no host"));
    }
    Ok(hosts)
}

/// The first host of a Slurm host list: the master of the job.
pub fn first_host(list: &str) -> Result<String, String> {
    Ok(expand_nodelist(list)?.swap_remove(0))
}

/// Splits at the commas outside brackets.
fn split_top_level(list: &str) -> Result<Vec<&str>, String> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("SLURM_NODELIST `{list}`: unbalanced brackets"));
        }
    }
    if depth != 0 {
        return Err(format!("SLURM_NODELIST `{list}`: unbalanced brackets"));
    }
    parts.push(list[start..].trim());
    Ok(parts)
}

/// Expands one entry (`gpu[1-2]x[a]`-like), bracket group by bracket group.
fn expand_host(entry: &str, list: &str) -> Result<Vec<String>, String> {
    let Some(open) = entry.find('[') else {
        return Ok(vec![entry.to_string()]);
    };
    let close = open
        + entry[open..]
            .find(']')
            .ok_or_else(|| format!("SLURM_NODELIST `{list}`: unbalanced brackets"))?;
    let (prefix, ranges, rest) = (&entry[..open], &entry[open + 1..close], &entry[close + 1..]);
    let tails = expand_host(rest, list)?;
    let mut hosts = Vec::new();
    for range in ranges.split(',') {
        for number in expand_range(range.trim())
            .ok_or_else(|| format!("SLURM_NODELIST `{list}`: bad range `{range}`"))?
        {
            hosts.extend(tails.iter().map(|tail| format!("{prefix}{number}{tail}")));
        }
    }
    Ok(hosts)
}

/// `01-03` → `01 02 03` (the width of the first bound is kept); `7` → `7`.
fn expand_range(range: &str) -> Option<Vec<String>> {
    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
    if lo.is_empty() || !lo.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (a, b): (u64, u64) = (lo.parse().ok()?, hi.parse().ok()?);
    if b < a {
        return None;
    }
    let width = lo.len();
    Some((a..=b).map(|n| format!("{n:0width$}")).collect())
}

/// The tasks on node `node` from `SLURM_TASKS_PER_NODE` (`2(x3),1`: two on
/// each of the first three nodes, one on the fourth).
pub fn tasks_on_node(tasks_per_node: &str, node: u32) -> Option<u32> {
    let mut seen = 0u32;
    for group in tasks_per_node.split(',') {
        let (count, repeat) = match group.split_once("(x") {
            Some((count, rest)) => (count, rest.strip_suffix(')')?.parse::<u32>().ok()?),
            None => (group, 1),
        };
        let count = count.trim().parse::<u32>().ok()?;
        seen += repeat;
        if node < seen {
            return Some(count);
        }
    }
    None
}

/// The environment of the one worker this process runs under `srun`;
/// `lookup` reads a variable (the process environment, or a test's map).
/// The master port is `port` (the config's `env_cfg.dist_cfg.port`), else
/// `MASTER_PORT`, else 29500, as MMEngine's `_init_dist_slurm` picks it.
pub fn worker_env(
    lookup: impl Fn(&str) -> Option<String>,
    port: Option<u16>,
) -> Result<WorkerEnv, String> {
    let need = |name: &str| {
        lookup(name).ok_or_else(|| {
            format!(
                "`--launcher slurm` needs {name} in the environment (srun sets it); it is not set"
            )
        })
    };
    let number = |name: &str| -> Result<u32, String> {
        let text = need(name)?;
        text.trim()
            .parse()
            .map_err(|_| format!("{name}=`{text}` is not a number"))
    };
    let (rank, world_size) = (number("SLURM_PROCID")?, number("SLURM_NTASKS")?);
    let (local_rank, group_rank) = (number("SLURM_LOCALID")?, number("SLURM_NODEID")?);
    let master_addr = match lookup("MASTER_ADDR") {
        Some(addr) => addr,
        None => first_host(&need("SLURM_NODELIST")?)?,
    };
    let master_port = match (port, lookup("MASTER_PORT")) {
        (Some(port), _) => port,
        (None, Some(port)) => port
            .trim()
            .parse()
            .map_err(|_| format!("MASTER_PORT=`{port}` is not a port number"))?,
        (None, None) => DEFAULT_PORT,
    };
    let local_world_size =
        lookup("SLURM_TASKS_PER_NODE").and_then(|t| tasks_on_node(&t, group_rank));
    let env = WorkerEnv {
        rank,
        local_rank,
        world_size,
        local_world_size,
        group_rank: Some(group_rank),
        master_addr,
        master_port,
    };
    env.check()?;
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &str) -> Vec<String> {
        expand_nodelist(list).unwrap()
    }

    #[test]
    fn nodelists_expand_like_scontrol_show_hostnames() {
        assert_eq!(hosts("gpu5"), ["gpu5"]);
        assert_eq!(
            hosts("node[01-04,07],gpu5"),
            ["node01", "node02", "node03", "node04", "node07", "gpu5"]
        );
        assert_eq!(hosts("a1,b[8-10]"), ["a1", "b8", "b9", "b10"]);
        assert_eq!(
            hosts("r[1-2]-n[01-02]"),
            ["r1-n01", "r1-n02", "r2-n01", "r2-n02"]
        );
        assert_eq!(
            hosts("node[009-011].cluster"),
            ["node009", "node010", "node011"].map(|h| format!("{h}.cluster"))
        );
        assert_eq!(first_host("node[01-04,07],gpu5").unwrap(), "node01");
        assert_eq!(first_host("gpu[3]").unwrap(), "gpu3");
    }

    #[test]
    fn malformed_nodelists_are_errors() {
        for bad in [
            "",
            "node[01-",
            "node]1[",
            "node[4-2]",
            "node[a-b]",
            "n[[1]]",
        ] {
            assert!(expand_nodelist(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tasks_per_node_is_read_per_node() {
        assert_eq!(tasks_on_node("4", 0), Some(4));
        assert_eq!(tasks_on_node("2(x3),1", 2), Some(2));
        assert_eq!(tasks_on_node("2(x3),1", 3), Some(1));
        assert_eq!(tasks_on_node("2(x3),1", 4), None);
    }

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    const SRUN: [(&str, &str); 6] = [
        ("SLURM_PROCID", "5"),
        ("SLURM_NTASKS", "8"),
        ("SLURM_LOCALID", "1"),
        ("SLURM_NODEID", "1"),
        ("SLURM_NODELIST", "node[01-04,07],gpu5"),
        ("SLURM_TASKS_PER_NODE", "4(x2)"),
    ];

    #[test]
    fn srun_variables_map_to_torchrun_ones() {
        let env = worker_env(lookup(&SRUN), None).unwrap();
        assert_eq!(
            (env.rank, env.world_size, env.local_rank, env.group_rank),
            (5, 8, 1, Some(1))
        );
        assert_eq!(
            (
                env.master_addr.as_str(),
                env.master_port,
                env.local_world_size
            ),
            ("node01", 29500, Some(4))
        );
        let mut vars = SRUN.to_vec();
        vars.extend([("MASTER_ADDR", "10.0.0.9"), ("MASTER_PORT", "1234")]);
        let env = worker_env(lookup(&vars), None).unwrap();
        assert_eq!(
            (env.master_addr.as_str(), env.master_port),
            ("10.0.0.9", 1234)
        );
        // env_cfg.dist_cfg.port wins over MASTER_PORT.
        let env = worker_env(lookup(&vars), Some(29601)).unwrap();
        assert_eq!(env.master_port, 29601);
    }

    #[test]
    fn a_missing_srun_variable_is_named() {
        let vars: Vec<_> = SRUN
            .iter()
            .copied()
            .filter(|(k, _)| *k != "SLURM_NTASKS")
            .collect();
        let err = worker_env(lookup(&vars), None).unwrap_err();
        assert!(err.contains("SLURM_NTASKS"), "{err}");
        let vars: Vec<_> = SRUN
            .iter()
            .copied()
            .filter(|(k, _)| *k != "SLURM_NODELIST")
            .collect();
        assert!(worker_env(lookup(&vars), None)
            .unwrap_err()
            .contains("SLURM_NODELIST"));
    }
}
