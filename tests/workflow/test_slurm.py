"""The SLURM profile on a real SLURM cluster (issue 5).

``test_workflow_on_a_real_slurm_cluster`` installs Debian's SLURM and munge with apt,
writes ``/etc/slurm/slurm.conf`` for this one node from its real CPUs and memory, starts
munged, slurmctld and slurmd on localhost, and runs a tiny workflow through
``--profile profiles/slurm``: every job must be a real ``sbatch``, and the results must
equal those of a local ``--cores`` run of the same config. It skips, saying why, where it
is not root or apt is missing or cannot reach the package registry; CI has both.

Clean-up, however the test ends: every daemon it started is stopped by PID (after
``scancel`` of the test cluster's jobs), and the ``slurm.conf`` it wrote is removed, so
``/etc/slurm`` is left as the packages installed it. The packages stay installed. A
``slurm.conf`` it did not write is never touched: the test skips instead.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from collapse_spectroscopy.store import scanfile
from workflow_helpers import ROOT, SNAKEMAKE, tiny_config, workdir

PROFILE = ROOT / "profiles" / "slurm"

SLURM_CONF = Path("/etc/slurm/slurm.conf")  # srun in a job step reads only this path
MARKER = "# Written by collapse-spectroscopy tests/workflow/test_slurm.py; removed when it ends."
PARTITION = "cstest"
ACCOUNT = "cstest"  # no accounting: any account name is accepted
TEMPERATURES = [0.01, 0.05, 0.3]


def profile():
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


# --- the profile itself: no cluster needed --------------------------------------------


def test_profile_shares_no_key_with_the_workflow_profile():
    """profiles/default is applied beside --profile and wins key by key."""
    default = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    assert not set(default) & set(profile())


def test_profile_settings_are_sane():
    prof = profile()
    assert prof["executor"] == "slurm"
    # without accounting sacct answers nothing: the workflow would wait forever
    assert prof["slurm-status-command"] == "squeue"
    # squeue sees a finished job for MinJobAge (SLURM's default 300 s); the plugin falls
    # back to sacct below 3 x init-seconds
    assert 3 * prof["slurm-init-seconds-before-status-checks"] < 300
    assert {"slurm_partition", "slurm_account", "mem_mb", "runtime"} <= set(
        prof["default-resources"]
    )
    # each rule's resources have one home, the rule: the profile repeats none of them
    # (the training jobs' runtime grows with training.max_updates, and their SIGTERM
    # warning comes with the rule, workflow/rules/scan.smk)
    for rule, resources in (prof.get("set-resources") or {}).items():
        assert not {"runtime", "mem_mb", "slurm_extra"} & set(resources), rule


def test_profile_dry_run(tmp_path):
    """Every key of the profile is an option Snakemake and the plugin know."""
    wd = workdir(tmp_path / "wd", tiny_config(TEMPERATURES, max_updates=500))
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd)]
        + ["--profile", str(PROFILE), "-n"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout + proc.stderr
    assert "train_point" in out
    # every training job asks SLURM for a SIGTERM before its time limit, to checkpoint
    jobs = out.split("rule train_point:")[1:]
    assert jobs and all(
        re.search(r"slurm_extra=--signal=TERM@\d+", j.split("rule ")[0]) for j in jobs
    )


# --- a real one-node SLURM cluster ----------------------------------------------------


def run(cmd, check=True, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def apt_install(packages):
    """Install Debian packages, or skip saying why (no network, no registry)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    proc = run(install, check=False, env=env, timeout=900)
    if proc.returncode == 0:
        return
    update = run(["apt-get", "update", "-q"], check=False, env=env, timeout=600)
    proc = run(install, check=False, env=env, timeout=900)
    if proc.returncode == 0:
        return
    offline = re.search(
        r"Could not resolve|Temporary failure|Failed to fetch|Unable to connect|"
        r"Network is unreachable|Unable to locate package",
        update.stdout + update.stderr + proc.stdout + proc.stderr,
    )
    if offline:
        pytest.skip(f"apt cannot install {packages}: {offline.group(0)} (no network?)")
    raise AssertionError(f"apt-get install {packages} failed:\n{proc.stdout}{proc.stderr}")


def free_ports(n):
    """n distinct free TCP ports on localhost (the daemons' ports: no clash with a
    SLURM that may already run here)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def node_line():
    """This node as slurmd sees it: its name, CPUs, sockets, cores, threads, memory."""
    out = run(["slurmd", "-C"]).stdout
    line = next(x for x in out.splitlines() if x.startswith("NodeName="))
    keep = ("NodeName", "CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket")
    keep += ("ThreadsPerCore", "RealMemory")
    fields = dict(f.split("=", 1) for f in line.split())
    return " ".join(f"{k}={fields[k]}" for k in keep if k in fields), fields


def slurm_conf(state):
    node, fields = node_line()
    ctld_port, d_port = free_ports(2)
    return f"""{MARKER}
# One node on localhost, no accounting (the executor polls squeue).
ClusterName=cstest
SlurmctldHost={fields["NodeName"]}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
AuthType=auth/munge
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/d
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue shows a finished job this long: far above the plugin's polling interval
# (init-seconds, then up to 180 s) and 3 x init-seconds (else it falls back to sacct)
MinJobAge=3600
ReturnToService=2
SchedulerType=sched/backfill
{node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def munge_works():
    if not shutil.which("munge"):
        return False
    cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
    if cred.returncode != 0:
        return False
    return subprocess.run(["unmunge"], input=cred.stdout, capture_output=True).returncode == 0


def wait_for(what, ready, daemons, timeout=90):
    deadline = time.time() + timeout
    while not ready():
        for name, (proc, log) in daemons.items():
            if proc.poll() is not None:
                raise AssertionError(
                    f"{name} exited ({proc.returncode}) while waiting for {what}:\n"
                    + Path(log).read_text()[-3000:]
                )
        if time.time() > deadline:
            logs = "\n".join(
                f"--- {n}\n{Path(lg).read_text()[-2000:]}" for n, (_, lg) in daemons.items()
            )
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.5)


def stop(proc, timeout=20):
    """Stop one daemon we started, by its PID."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root: installs SLURM with apt and starts its daemons")
    if not shutil.which("apt-get"):
        pytest.skip("needs apt-get (Debian) to install SLURM and munge")
    if SLURM_CONF.exists() and not SLURM_CONF.read_text().startswith(MARKER):
        pytest.skip(f"{SLURM_CONF} exists and was not written by this test: not touching it")

    if not all(shutil.which(x) for x in ("slurmctld", "slurmd", "sbatch", "munged")):
        apt_install(["slurm-wlm", "munge"])

    state = tmp_path_factory.mktemp("slurm")
    daemons = {}  # name -> (Popen, log file)

    def start(name, cmd, **kwargs):
        log = state / f"{name}.out"
        with log.open("w") as fh:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # no terminal signals from the test run
                **kwargs,
            )
        daemons[name] = (proc, log)

    try:
        # munge: its socket directory owned by munge, a key, munged run as munge.
        # (Docker's policy-rc.d keeps apt from starting any of these services.)
        if not munge_works():
            run_dir = Path("/run/munge")
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.chown(run_dir, "munge", "munge")
            run_dir.chmod(0o755)
            key = Path("/etc/munge/munge.key")
            if not key.exists():
                key.write_bytes(os.urandom(1024))
                shutil.chown(key, "munge", "munge")
                key.chmod(0o400)
            start("munged", ["munged", "--foreground", "--force"], user="munge", group="munge")
            wait_for("munge credentials", munge_works, daemons)

        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(slurm_conf(state))
        for sub in ("ctld", "d"):
            (state / sub).mkdir()
        start("slurmctld", ["slurmctld", "-D"])
        start("slurmd", ["slurmd", "-D"])

        def node_idle():
            out = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True
            ).stdout
            return out.strip() == "idle"

        wait_for("the node to be idle in sinfo", node_idle, daemons)
        print("\n" + SLURM_CONF.read_text())
        print(run(["sinfo", "-N", "-l"]).stdout)
        yield state
    finally:
        if "slurmctld" in daemons and daemons["slurmctld"][0].poll() is None:
            subprocess.run(["scancel", "--user", "root"], capture_output=True, timeout=30)
            deadline = time.time() + 30
            while time.time() < deadline:
                out = subprocess.run(
                    ["squeue", "-h", "-t", "PENDING,RUNNING,COMPLETING", "-o", "%i"],
                    capture_output=True,
                    text=True,
                ).stdout
                if not out.strip():
                    break
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            if name in daemons:
                stop(daemons[name][0])
        if SLURM_CONF.exists() and SLURM_CONF.read_text().startswith(MARKER):
            SLURM_CONF.unlink()


def job_env():
    """The run's environment; sbatch --export=ALL hands it to the jobs (this venv's
    `collapse-spectroscopy` first on PATH)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def assert_same_points(a, b):
    """Bit-identical observables: one deterministic CPU code path, same seed, one
    thread per job, same machine and libraries. Any difference means a job ran
    something else (another config, thread count or data)."""
    da = scanfile.read(a).drop_vars("elapsed_s")  # wall time
    db = scanfile.read(b).drop_vars("elapsed_s")
    assert set(da.data_vars) == set(db.data_vars)
    for name in da.data_vars:
        x, y = da[name].values, db[name].values
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), f"{a.name}: {name} differs"
        else:
            assert np.array_equal(x, y), f"{a.name}: {name} differs"
    assert da.attrs == db.attrs


def start_run(cmd, log, env):
    with open(log, "w") as fh:
        return subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def interrupt(proc, grace=60):
    """A run the test did not see end (it failed or was interrupted): SIGINT, on which
    Snakemake cancels its jobs (``timeout`` relays it), then SIGKILL to its process
    group."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGINT)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slurm
def test_workflow_on_a_real_slurm_cluster(slurm_cluster, tmp_path):
    config = tiny_config(TEMPERATURES, max_updates=500)
    env = job_env()

    # the reference: the same config run locally, meanwhile (one thread per job, so the
    # results do not depend on the load)
    local = workdir(tmp_path / "local", config)
    local_log = tmp_path / "local_run.log"
    local_run = start_run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(local), "--cores", "2"],
        local_log,
        env,
    )

    # through the SLURM profile, as a cluster user runs it; only the two placeholders
    # (partition, account) replaced for this cluster, and quicker first status checks
    wd = workdir(tmp_path / "slurm", config)
    resources = {
        **profile()["default-resources"],
        "slurm_partition": PARTITION,
        "slurm_account": ACCOUNT,
    }
    log = tmp_path / "slurm_run.log"
    cmd = [
        # the executor ignores SIGTERM; on SIGINT it scancels its jobs
        *["timeout", "-s", "INT", "-k", "60", "900"],
        *SNAKEMAKE,
        *["-s", str(ROOT / "Snakefile"), "-d", str(wd), "--profile", str(PROFILE)],
        *["--default-resources", *(f"{k}={v}" for k, v in resources.items())],
        *["--slurm-init-seconds-before-status-checks", "2", "--verbose"],
    ]
    t0 = time.time()
    slurm_run = start_run(cmd, log, env)
    try:
        rc = slurm_run.wait(timeout=1000)
        t_slurm = time.time() - t0
        local_rc = local_run.wait(timeout=900)
    finally:
        interrupt(slurm_run)
        interrupt(local_run)
    assert local_rc == 0, f"local run failed:\n{local_log.read_text()[-4000:]}"
    text = log.read_text()
    assert rc == 0, f"SLURM run failed ({rc}):\n{text[-6000:]}"

    # every job but the workflow's local rules was an sbatch, and SLURM ran it to completion
    jobs = {
        int(j): r
        for r, j in re.findall(
            r"^\s*(?:local)?rule (\w+):\n(?:\s+\w+:.*\n)*?\s+jobid: (\d+)$", text, re.M
        )
    }
    local_rules = set(re.findall(r"^\s*localrule (\w+):$", text, re.M))
    declared_local = {"all", "split_map_figure", "run_config"}  # target, file copy, config files
    assert local_rules <= declared_local, f"jobs run outside SLURM: {local_rules - declared_local}"
    submitted = {
        int(j): (int(sid), line)
        for line, j, sid in re.findall(
            r"^(Job (\d+) has been submitted with SLURM jobid (\d+) .*)$", text, re.M
        )
    }
    expected = {j for j, r in jobs.items() if r not in declared_local}
    assert set(submitted) == expected, f"not submitted: {expected - set(submitted)}"
    rules = sorted(jobs[j] for j in expected)
    assert rules.count("train_point") == len(TEMPERATURES)
    assert {"prepare", "gather", "spectra", "figures"} <= set(rules)
    sbatch = re.findall(r"^sbatch call: (sbatch .*)$", text, re.M)
    assert len(sbatch) == len(expected)
    run_uuid = re.search(r"--job-name (\S+)", sbatch[0]).group(1)
    assert all(f"--job-name {run_uuid} " in s for s in sbatch)
    assert all(f"-p {PARTITION}" in s and f"-A {ACCOUNT}" in s for s in sbatch)
    train_calls = [s for s in sbatch if "--comment rule_train_point" in s]
    assert len(train_calls) == len(TEMPERATURES)
    assert all("--signal=TERM@300" in s and "--mem 2000" in s for s in train_calls)

    # SLURM's own record (squeue keeps finished jobs for MinJobAge): one COMPLETED job
    # of this run per submission, its comment naming the rule and wildcards
    out = run(["squeue", "-h", "-t", "all", "-n", run_uuid, "-o", "%i|%T|%k"]).stdout
    record = {
        int(i): (state, comment)
        for i, state, comment in (line.split("|", 2) for line in out.split())
    }
    for j, (sid, _) in submitted.items():
        state, comment = record[sid]
        assert state == "COMPLETED", (sid, state)
        assert comment.startswith(f"rule_{jobs[j]}"), (sid, comment)

    # the same results as the local run
    for t in TEMPERATURES:
        point = Path("results/tiny/scan") / f"T={t!r}" / "seed=0.nc"
        assert_same_points(local / point, wd / point)
    for name in ("spectra.csv", "summary.json", "data/split_summary.json"):
        a = (local / "results/tiny" / name).read_text()
        assert a == (wd / "results/tiny" / name).read_text(), name
    assert (wd / "results/tiny/figures/fig3_duality.png").is_file()

    print(f"\nSLURM run: {t_slurm:.0f} s")
    print(f"SLURM jobs of run {run_uuid} (squeue -t all):\n{out}")
    for j in sorted(submitted):
        print(submitted[j][1])
    for s in sbatch:
        head, _, wrap = s.partition(' --wrap="')
        print(f'{head} --wrap="{wrap[:110]}..."')
