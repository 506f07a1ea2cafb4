#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the launcher's tests (issue 32).
#
#   tests/slurm_cluster.sh start DIR   # install (Debian packages, root) if needed, configure, start
#   tests/slurm_cluster.sh stop DIR    # stop the daemons it started, by PID
#
# Everything it writes (slurm.conf, state, spool, logs, pid files) is under DIR; clients find the
# cluster with `export SLURM_CONF=DIR/slurm.conf`. Exit 3: SLURM cannot be installed or started
# here (not root, no apt-get): the tests skip with that message; in CI it must work.
set -euo pipefail
cmd=${1:?usage: slurm_cluster.sh start|stop DIR}
dir=$(mkdir -p "${2:?usage: slurm_cluster.sh start|stop DIR}" && cd "$2" && pwd)

stop() {
  for name in slurmd slurmctld munged; do
    if [ -f "$dir/$name.pid" ]; then
      pid=$(cat "$dir/$name.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$dir/$name.pid"
    fi
  done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: slurm_cluster.sh start|stop DIR" >&2; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || \
   ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "SLURM is not installed and cannot be (needs root and apt-get)" >&2; exit 3
  fi
  # the packages' postinst would start the daemons through init scripts: keep them off
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' > $policy; chmod +x $policy; made_policy=1; fi
  export DEBIAN_FRONTEND=noninteractive
  pkgs="slurmctld slurmd slurm-client munge"
  apt-get install -y -q $pkgs >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && \
    apt-get install -y -q $pkgs >/dev/null 2>&1; } || true
  [ $made_policy = 1 ] && rm -f $policy
  command -v slurmctld >/dev/null || { echo "installing SLURM failed" >&2; exit 3; }
fi
[ "$(id -u)" = 0 ] || { echo "the test cluster runs its daemons as root" >&2; exit 3; }

stop  # a cluster left running in DIR by an earlier start
mkdir -p "$dir/state" "$dir/spool" "$dir/log"
host=$(hostname -s)
node=$(slurmd -C | head -1)
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
cat > "$dir/slurm.conf" <<EOF
ClusterName=akd-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerParameters=sched_interval=2,bf_interval=2
DependencyParameters=kill_invalid_depend
ReturnToService=2
MpiDefault=none
JobRequeue=1
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
DefMemPerCPU=$((mem / cpus))
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# munged runs as the munge user, its socket under /run/munge
install -d -o munge -g munge -m 0755 /run/munge
rm -f /run/munge/munged.pid
runuser -u munge -- /usr/sbin/munged --force
for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
cp /run/munge/munged.pid "$dir/munged.pid"

export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do
  if sinfo -h -o %T 2>/dev/null | grep -qx idle; then echo "$dir/slurm.conf"; exit 0; fi
  sleep 0.2
done
echo "the cluster did not come up; see $dir/log" >&2
stop
exit 3
