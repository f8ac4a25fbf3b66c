package pfkey

// OpenBSD speaks another PF_KEY dialect: flows instead of policies
// (SADB_X_ADDFLOW, SADB_X_DELFLOW with SRC_FLOW/DST_FLOW/SRC_MASK/
// DST_MASK/PROTOCOL/FLOW_TYPE extensions), no reqids, SA bundles grouped
// with SADB_X_GRPSPIS, and extension numbers past 16 that differ from
// KAME's (sys/net/pfkeyv2.h: SADB_X_EXT_SA2 is 23, SADB_X_EXT_POLICY 25,
// SADB_X_EXT_UDPENCAP 31). The backend does not implement it and does
// not register on OpenBSD; iked talks to that kernel.

// AF_KEY is 30 on OpenBSD (sys/sys/socket.h; x/sys/unix.AF_KEY).
const openbsdAFKey = 30
