/* SPDX-License-Identifier: Apache-2.0 */
/* pin.h - map names and pin layout, typed once for bpf/, the agent and the CLI.
 *
 * Maps are pinned by name (LIBBPF_PIN_BY_NAME) under the bpffs root
 * (default SL_BPFFS_ROOT), links under <root>/links/<link name>.
 */
#ifndef SLUICE_PIN_H
#define SLUICE_PIN_H

#define SL_BPFFS_ROOT		"/sys/fs/bpf/sluice"
#define SL_LINKS_DIR		"links"

#define SL_MAP_SVC		"sl_svc_v1"
#define SL_MAP_BE		"sl_be_v1"
#define SL_MAP_AFF		"sl_aff_v1"
#define SL_MAP_REVNAT		"sl_revnat_v1"
#define SL_MAP_UDPFWD		"sl_udpfwd_v1"
#define SL_MAP_METRICS		"sl_metrics_v1"
#define SL_MAP_NETNS		"sl_netns_v1"
#define SL_MAP_ORIGDST		"sl_origdst_v1"
#define SL_MAP_SK_ORIG		"sl_sk_orig_v1"
#define SL_MAP_POLID		"sl_polid_v1"
#define SL_MAP_POLEP		"sl_polep_v1"
#define SL_MAP_POLRULE		"sl_polrule_v1"
#define SL_MAP_POLPORT		"sl_polport_v1"
#define SL_MAP_POLRANGE		"sl_polrange_v1"
#define SL_MAP_POLSTAT		"sl_polstat_v1"
#define SL_MAP_POLCT		"sl_polct_v1"
#define SL_MAP_POLCTPORT	"sl_polctport_v1"
#define SL_MAP_POLEV		"sl_polev_v1"
#define SL_MAP_POLEVRL		"sl_polevrl_v1"
#define SL_MAP_SOCKS		"sl_socks_v1"
#define SL_MAP_SK_ACCEL		"sl_sk_accel_v1"
#define SL_MAP_HOPPAIR		"sl_hoppair_v1"
#define SL_MAP_HOPSTAT		"sl_hopstat_v1"

#endif /* SLUICE_PIN_H */
