#!/usr/bin/env bash
# Where a cluster run spends its CPU: the client vs the Ballista scheduler and executors
# (issue 17: the executors, not the client, should do the work). Wall time alone cannot tell,
# since all of them share the same cores. Sourced; defines functions only:
#
#   source deploy/local/cpu-share.sh
#   run_with_cpu_share NAME COMMAND...   # runs the client; its stdout, then the cluster's peak
#                                        # RSS per process and one CPU summary line
#
# CPU comes from /proc/PID/stat (utime + stime of all threads, plus reaped children's) for the
# processes deploy/local/cluster.sh started (pid files in $EBROKER_CLUSTER_DIR), and from
# /usr/bin/time for the client. A cluster process that exits mid-run drops out of the second
# snapshot, so its share reads low; such a run has failed anyway.

cpu_ticks() { # pid... -> utime + stime + cutime + cstime summed over the pids still alive, in clock ticks
  local pid line total=0
  local -a f
  for pid in "$@"; do
    { read -r line <"/proc/$pid/stat"; } 2>/dev/null || continue
    # comm (field 2) is in parentheses and may hold spaces or ')': split after the last ')'.
    # f[0] is then field 3 (state), so fields 14-17 are f[11..14].
    read -ra f <<<"${line##*)}"
    total=$((total + f[11] + f[12] + f[13] + f[14]))
  done
  echo "$total"
}

peak_rss_mib() { # pid... -> "name1 N MiB, name2 M MiB": each process's peak RSS so far (VmHWM)
  local pid kb out=""
  for pid in "$@"; do
    kb="$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)" || continue
    [ -n "$kb" ] && out="${out:+$out, }$(cat "/proc/$pid/comm") $((kb / 1024)) MiB"
  done
  echo "${out:-none}"
}

cluster_pids() { # dir -> the pids in its scheduler/exec-a/exec-b pid files, of processes still running
  local name pid
  for name in scheduler exec-a exec-b; do
    [ -f "$1/$name.pid" ] || continue
    pid="$(cat "$1/$name.pid")"
    [ -d "/proc/$pid" ] && echo "$pid"
  done
  return 0
}

run_with_cpu_share() { # name, command... -> the command's stdout, then "NAME: client ... on the cluster"
  local name=$1; shift
  local times before after status=0 user=0 sys=0 rss=0
  local -a pids
  mapfile -t pids < <(cluster_pids "${EBROKER_CLUSTER_DIR:-/tmp/ebroker-cluster}")
  times="$(mktemp)"
  before="$(cpu_ticks "${pids[@]}")"
  # `|| status=$?` so that a failing client still gets its summary under set -e; returned below.
  /usr/bin/time -f "%U %S %M" -o "$times" "$@" || status=$?
  after="$(cpu_ticks "${pids[@]}")"
  echo "$name: peak RSS of the cluster's processes since they started: $(peak_rss_mib "${pids[@]}")"
  # On failure time(1) writes "Command exited with non-zero status N" first: the last line is ours.
  # It writes nothing of ours when it could not start the command: then zeros and its status.
  read -r user sys rss < <(tail -n 1 "$times") || true
  rm -f "$times"
  awk -v name="$name" -v user="$user" -v sys="$sys" -v rss="$rss" -v ticks=$((after - before)) \
    -v hz="$(getconf CLK_TCK)" 'BEGIN {
      client = user + sys; cluster = ticks / hz; all = client + cluster
      printf "%s: client %.1f s CPU (peak %d MiB), scheduler + executors %.1f s CPU: %.1f%% on the cluster\n",
        name, client, rss / 1024, cluster, (all > 0 ? 100 * cluster / all : 0)
    }'
  return "$status"
}
