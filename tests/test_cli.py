"""The `keel` command as users run it: help, version, exit codes and error messages."""

import subprocess

import keel


def run(keel_bin, *args, env=None):
    return subprocess.run([keel_bin, *args], capture_output=True, text=True, timeout=60, env=env)


def test_help_lists_subcommands(keel_bin):
    r = run(keel_bin, "--help")
    assert r.returncode == 0
    assert "version" in r.stdout and "gpu" in r.stdout and "--log-level" in r.stdout


def test_version_matches_the_python_package(keel_bin):
    r = run(keel_bin, "version")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0] == f"keel {keel.__version__}"
    assert run(keel_bin, "--version").stdout == f"keel {keel.__version__}\n"


def test_unknown_flags_and_bad_values_exit_2_naming_the_flag(keel_bin):
    cases = [
        (["--bogus"], "--bogus"),
        (["version", "--extra"], "--extra"),
        (["--log-level", "loud", "version"], "--log-level"),
        (["version", "--log-level"], "--log-level"),
        (["nosuch"], "unknown command 'nosuch'"),
        ([], "no command given"),
    ]
    for args, expected in cases:
        r = run(keel_bin, *args)
        assert r.returncode == 2, (args, r)
        assert expected in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and "terminate" not in r.stderr


def test_log_level_comes_from_the_environment_too(keel_bin):
    r = run(keel_bin, "version", env={"KEEL_LOG_LEVEL": "nonsense", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert "--log-level" in r.stderr


def test_gpu_reports_the_driver_or_its_absence(keel_bin):
    r = run(keel_bin, "gpu")
    if r.returncode == 0:
        assert "device(s)" in r.stdout
    else:
        assert r.returncode == 1
        assert "CUDA" in r.stderr  # "no CUDA driver ..." or "built without CUDA support"
