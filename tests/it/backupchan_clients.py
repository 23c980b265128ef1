"""Drives a running stowage through Backup-chan's own clients, unchanged: the
`backupchan` CLI (backupchan-cli) and the library (backupchan-client-lib).

Arguments: port, API key, work directory. Exits non-zero on the first failed check and
prints "all client checks passed" at the end. Run by tests/it/backupchan.rs.
"""

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time

import requests
from backupchan import API, BackupchanAPIError

PORT, KEY, WORK = int(sys.argv[1]), sys.argv[2], sys.argv[3]
CLI = os.environ["BACKUPCHAN_BIN"]
api = API("http://127.0.0.1", PORT, KEY)


def cli(*args, ok=True):
    """Runs the CLI; returns its output."""
    done = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    if ok and done.returncode != 0:
        sys.exit(f"backupchan {' '.join(args)} failed ({done.returncode}):\n{out}")
    return out


def check(condition, what):
    if not condition:
        sys.exit(f"check failed: {what}")


def wait_jobs():
    """Waits until no delayed job is running; every one must have finished."""
    deadline = time.time() + 120
    while True:
        delayed, _ = api.list_jobs()
        if all(job.status in ("FINISHED", "ERROR") for job in delayed):
            check(all(job.status == "FINISHED" for job in delayed), f"jobs {delayed}")
            return
        check(time.time() < deadline, "jobs still running")
        time.sleep(0.05)


def live(target):
    return [b for b in api.get_target(target)[1] if not b.is_recycled]


def write(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def tree_of(root):
    """Relative path -> bytes of every file under root."""
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                files[os.path.relpath(full, root)] = f.read()
    return files


def tar_members(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


os.chdir(WORK)
print(cli("config", "new", "-H", "http://127.0.0.1", "-p", str(PORT), "-a", KEY))

# Targets. The CLI's `target new` builds its tags with `",".split(...)`: without --tags
# it crashes (empty separator), with them it sends [","], which the server refuses as a
# tag, so targets are created through the library, which sends what it is given.
web = api.new_target("web", "single", "count", 2, "recycle", "/var/backups/web",
                     "web-$I-$M", False, "web", 0, ["db"])
files = api.new_target("files", "multi", "none", 0, "recycle", "/var/backups/files",
                       "files-$D", True, "files", 0, [])
scratch = api.new_target("scratch", "single", "none", 0, "delete", "/var/backups/s",
                         "s-$I", False, None, None, None)
out = cli("target", "new", "-n", "x", "-t", "single", "-c", "none", "-l", "/x", "-m", "x-$I", ok=False)
check("Created new target" not in out, "the CLI's target new bug is still there")

out = cli("target", "list")
check(out.index("files") < out.index("scratch") < out.index("web"), f"list by name:\n{out}")
out = cli("target", "list", "--compact")
check(web in out and "alias='web'" in out, out)
out = cli("target", "view", "web")
check("Name: web" in out and "After 2 copies" in out and "Tags: db" in out, out)
cli("target", "edit", "web", "--tags", "db,nightly", "--min-backups", "1", "--location", "/srv/web")
target, _ = api.get_target(web)
check(target.tags == ["db", "nightly"] and target.min_backups == 1, target)
check(target.location == "/srv/web" and target.target_type == "single", target)
try:
    api.edit_target(web, "web", "count", 2, "recycle", "/srv/web", "files-$D", False, "web", 1, [])
    sys.exit("a duplicate name template was accepted")
except BackupchanAPIError as error:
    check(error.status_code == 400 and "not unique" in str(error), error)
# The CLI's `target search` passes its arguments one position late (criteria as type,
# and so on), so only --name is searched through it; the library searches the rest.
out = cli("target", "search", "--name", "FIL")
check("1 target matched" in out and files in out, out)
check([t.id for t in api.search_targets(target_type="multi")] == [files], "search by type")
check([t.id for t in api.search_targets(tags=["db", "nightly"])] == [web], "search by tags")
check(api.search_targets(deduplicate=True)[0].id == files, "search by deduplicate")

# Single backups: upload through the CLI, download byte-exact under the template's name.
payload = os.urandom(1_500_000)  # over the JSON body limit of 1 MiB
write("dump.sql", payload)
out = cli("backup", "upload", "web", "dump.sql")
check("being processed by job #" in out, out)
wait_jobs()
backups = live(web)
check(len(backups) == 1 and backups[0].manual and backups[0].filesize == len(payload), backups)
first = backups[0].id
out = cli("backup", "download", first, "-d", WORK)
saved = os.path.join(WORK, f"web-{first}-manual.sql")
check(f"Backup saved as '{saved}'" in out, out)
check(open(saved, "rb").read() == payload, "single download differs")
for i in range(2):
    write(f"auto{i}.sql", payload + bytes([i]))
    cli("backup", "upload", "-a", "web", f"auto{i}.sql")
wait_jobs()
check([b.manual for b in live(web)] == [False, False, True], "newest first, manual flags")

# Recycle, restore, the recycle bin.
cli("backup", "recycle", first)
out = cli("recyclebin", "view")
check(first in out, out)
check([b.is_recycled for b in api.get_target(web)[1] if b.id == first] == [True], "recycled flag")
cli("backup", "restore", first)
check("There are no backups in the recycle bin" in cli("recyclebin", "view"), "bin empty")
out = cli("backup", "recycle", "00000000-0000-0000-0000-000000000000", ok=False)
check("Backup not found" in out, out)

# Scheduled jobs: count 2 with three live backups; force-running recycle_job recycles
# the oldest on the scheduler's next tick.
out = cli("job", "list")
check("upload_job / Status: FINISHED" in out and "recycle_job / Interval: 3600" in out, out)
cli("job", "forcerun", "recycle_job")
deadline = time.time() + 60
while len(live(web)) != 2:
    check(time.time() < deadline, "recycle_job did not run")
    time.sleep(0.05)
recycled = [b for b in api.list_recycled_backups()]
check([b.id for b in recycled] == [first], recycled)
stats = api.view_stats()
check(stats.total_targets == 3 and stats.total_backups == 3, stats)
check(stats.total_recycled_backups == 1 and stats.total_recycle_bin_size == len(payload), stats)
out = cli("stats", "view")
check("Total number of backups: 3 (1 recycled)" in out, out)
cli("recyclebin", "clear", "--delete-files")
check(api.list_recycled_backups() == [], "bin cleared")
check(len(api.get_target(web)[1]) == 2, "cleared backup gone")

# Multi backups: several files in one upload (the library sends one file per call, so
# the form is posted with requests, as the library does), a folder upload through the CLI
# (a tar.gz, whose entries the download extracts) and a sequential upload of the folder.
write("tree/a.txt", b"alpha\n")
write("tree/sub/b.bin", os.urandom(1_200_000))
write("tree/sub/deeper/c.txt", b"c" * 1000)
original = tree_of("tree")
form = [("backup_file", ("one.txt", io.BytesIO(b"one"))), ("backup_file", ("two.bin", io.BytesIO(b"2" * 5000)))]
reply = requests.post(f"http://127.0.0.1:{PORT}/api/target/files/upload", data={"manual": "1"},
                      files=form, headers={"Authorization": f"Bearer {KEY}"}).json()
check(reply["success"] and reply["job_id"] > 0, reply)
out = cli("backup", "upload", "files", "tree")
check("being processed by job" in out, out)
wait_jobs()
out = cli("backup", "upload", "-s", "files", "tree")
check("Upload file 3 of 3" in out and "Backup uploaded." in out, out)
backups = api.get_target(files)[1]
check(len(backups) == 3, backups)
sequential, folder, several = backups
got = tar_members(api.download_backup(several.id, WORK))
check(got == {"one.txt": b"one", "two.bin": b"2" * 5000}, sorted(got))
check(several.filesize == 5003, several)
path = api.download_backup(sequential.id, WORK)
check(os.path.basename(path) == f"files_{sequential.id}.tar", path)
check(tar_members(path) == original, "sequential upload differs")
got = tar_members(api.download_backup(folder.id, WORK))
check(all(name.startswith("tree/") for name in got), sorted(got))
check({os.path.relpath(n, "tree"): data for n, data in got.items()} == original,
      "folder upload differs")

# Deduplication (on for `files`): the same folder again is dropped by deduplicate_job,
# the oldest copy survives.
cli("backup", "upload", "-s", "files", "tree")
check(len(api.get_target(files)[1]) == 4, "fourth backup")
cli("job", "forcerun", "deduplicate_job")
deadline = time.time() + 60
while len(api.get_target(files)[1]) != 3:
    check(time.time() < deadline, "deduplicate_job did not run")
    time.sleep(0.05)
check(sequential.id in [b.id for b in api.get_target(files)[1]], "the oldest copy survives")

# Deleting backups and targets.
check("Target recycled backups deleted" in cli("target", "deleterecycled", "files", "-d"), "")
out = cli("target", "deletebackups", "files", "--delete-files")
check(api.get_target(files)[1] == [], out)
write("s.bin", b"scratch")
cli("backup", "upload", scratch, "s.bin")
wait_jobs()
only = live(scratch)[0].id
out = cli("backup", "delete", only, "-d")
check("Backup deleted." in out and live(scratch) == [], out)
cli("target", "delete", scratch, "-d")
out = cli("target", "view", scratch, ok=False)
check("Target not found" in out, out)
out = cli("log", "view", "-t", "3")
check(len(out.strip().splitlines()) == 3 and "Deleted target" in out, out)
print("all client checks passed")
