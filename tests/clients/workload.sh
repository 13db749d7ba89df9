#!/bin/sh
# The same netlink traffic on every target (the x86 test VM, the emulated ARM
# board), from static programs that run on both: busybox's ip and nlload.
#   workload.sh DIR     (DIR holds nlload, built for the target)
# What it sends, which the tests count exactly:
#   nlload: 3 CTRL_CMD_GETFAMILY, 2 RTM_GETLINK for a missing ifindex (ENODEV),
#           1 RTM_GETLINK dump
set -e
busybox ip link show lo > /dev/null
"$1/nlload" genl --count 3 > /dev/null
"$1/nlload" get --count 2 --ifindex 987654 > /dev/null
"$1/nlload" dump --count 1 > /dev/null
