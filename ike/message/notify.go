package message

// NotifyType is a Notify Message Type (RFC 7296 §3.10.1). Values below 16384
// are errors, the rest status types.
type NotifyType uint16

// Error notify types.
const (
	UNSUPPORTED_CRITICAL_PAYLOAD NotifyType = 1
	INVALID_IKE_SPI              NotifyType = 4
	INVALID_MAJOR_VERSION        NotifyType = 5
	INVALID_SYNTAX               NotifyType = 7
	INVALID_MESSAGE_ID           NotifyType = 9
	INVALID_SPI                  NotifyType = 11
	NO_PROPOSAL_CHOSEN           NotifyType = 14
	INVALID_KE_PAYLOAD           NotifyType = 17
	AUTHENTICATION_FAILED        NotifyType = 24
	SINGLE_PAIR_REQUIRED         NotifyType = 34
	NO_ADDITIONAL_SAS            NotifyType = 35
	INTERNAL_ADDRESS_FAILURE     NotifyType = 36
	FAILED_CP_REQUIRED           NotifyType = 37
	TS_UNACCEPTABLE              NotifyType = 38
	INVALID_SELECTORS            NotifyType = 39
	UNACCEPTABLE_ADDRESSES       NotifyType = 40 // RFC 4555
	UNEXPECTED_NAT_DETECTED      NotifyType = 41 // RFC 4555
	USE_ASSIGNED_HoA             NotifyType = 42 // RFC 5026
	TEMPORARY_FAILURE            NotifyType = 43
	CHILD_SA_NOT_FOUND           NotifyType = 44
	INVALID_GROUP_ID             NotifyType = 45 // RFC 9838
	AUTHORIZATION_FAILED         NotifyType = 46 // RFC 9838
	STATE_NOT_FOUND              NotifyType = 47 // RFC 9370
)

// Status notify types.
const (
	INITIAL_CONTACT                     NotifyType = 16384
	SET_WINDOW_SIZE                     NotifyType = 16385
	ADDITIONAL_TS_POSSIBLE              NotifyType = 16386
	IPCOMP_SUPPORTED                    NotifyType = 16387
	NAT_DETECTION_SOURCE_IP             NotifyType = 16388
	NAT_DETECTION_DESTINATION_IP        NotifyType = 16389
	COOKIE                              NotifyType = 16390
	USE_TRANSPORT_MODE                  NotifyType = 16391
	HTTP_CERT_LOOKUP_SUPPORTED          NotifyType = 16392
	REKEY_SA                            NotifyType = 16393
	ESP_TFC_PADDING_NOT_SUPPORTED       NotifyType = 16394
	NON_FIRST_FRAGMENTS_ALSO            NotifyType = 16395
	MOBIKE_SUPPORTED                    NotifyType = 16396 // RFC 4555
	ADDITIONAL_IP4_ADDRESS              NotifyType = 16397 // RFC 4555
	ADDITIONAL_IP6_ADDRESS              NotifyType = 16398 // RFC 4555
	NO_ADDITIONAL_ADDRESSES             NotifyType = 16399 // RFC 4555
	UPDATE_SA_ADDRESSES                 NotifyType = 16400 // RFC 4555
	COOKIE2                             NotifyType = 16401 // RFC 4555
	NO_NATS_ALLOWED                     NotifyType = 16402 // RFC 4555
	AUTH_LIFETIME                       NotifyType = 16403 // RFC 4478
	MULTIPLE_AUTH_SUPPORTED             NotifyType = 16404 // RFC 4739
	ANOTHER_AUTH_FOLLOWS                NotifyType = 16405 // RFC 4739
	REDIRECT_SUPPORTED                  NotifyType = 16406 // RFC 5685
	REDIRECT                            NotifyType = 16407 // RFC 5685
	REDIRECTED_FROM                     NotifyType = 16408 // RFC 5685
	TICKET_LT_OPAQUE                    NotifyType = 16409 // RFC 5723
	TICKET_REQUEST                      NotifyType = 16410 // RFC 5723
	TICKET_ACK                          NotifyType = 16411 // RFC 5723
	TICKET_NACK                         NotifyType = 16412 // RFC 5723
	TICKET_OPAQUE                       NotifyType = 16413 // RFC 5723
	LINK_ID                             NotifyType = 16414 // RFC 5739
	USE_WESP_MODE                       NotifyType = 16415 // RFC 5840
	ROHC_SUPPORTED                      NotifyType = 16416 // RFC 5857
	EAP_ONLY_AUTHENTICATION             NotifyType = 16417 // RFC 5998
	CHILDLESS_IKEV2_SUPPORTED           NotifyType = 16418 // RFC 6023
	QUICK_CRASH_DETECTION               NotifyType = 16419 // RFC 6290
	IKEV2_MESSAGE_ID_SYNC_SUPPORTED     NotifyType = 16420 // RFC 6311
	IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED NotifyType = 16421 // RFC 6311
	IKEV2_MESSAGE_ID_SYNC               NotifyType = 16422 // RFC 6311
	IPSEC_REPLAY_COUNTER_SYNC           NotifyType = 16423 // RFC 6311
	SECURE_PASSWORD_METHODS             NotifyType = 16424 // RFC 6467
	PSK_PERSIST                         NotifyType = 16425 // RFC 6631
	PSK_CONFIRM                         NotifyType = 16426 // RFC 6631
	ERX_SUPPORTED                       NotifyType = 16427 // RFC 6867
	IFOM_CAPABILITY                     NotifyType = 16428
	SENDER_REQUEST_ID                   NotifyType = 16429
	IKEV2_FRAGMENTATION_SUPPORTED       NotifyType = 16430 // RFC 7383
	SIGNATURE_HASH_ALGORITHMS           NotifyType = 16431 // RFC 7427
	CLONE_IKE_SA_SUPPORTED              NotifyType = 16432 // RFC 7791
	CLONE_IKE_SA                        NotifyType = 16433 // RFC 7791
	PUZZLE                              NotifyType = 16434 // RFC 8019
	USE_PPK                             NotifyType = 16435 // RFC 8784
	PPK_IDENTITY                        NotifyType = 16436 // RFC 8784
	NO_PPK_AUTH                         NotifyType = 16437 // RFC 8784
	INTERMEDIATE_EXCHANGE_SUPPORTED     NotifyType = 16438 // RFC 9242
	IP4_ALLOWED                         NotifyType = 16439 // RFC 8983
	IP6_ALLOWED                         NotifyType = 16440 // RFC 8983
	ADDITIONAL_KEY_EXCHANGE             NotifyType = 16441 // RFC 9370
)

var notifyNames = map[NotifyType]string{
	UNSUPPORTED_CRITICAL_PAYLOAD:        "UNSUPPORTED_CRITICAL_PAYLOAD",
	INVALID_IKE_SPI:                     "INVALID_IKE_SPI",
	INVALID_MAJOR_VERSION:               "INVALID_MAJOR_VERSION",
	INVALID_SYNTAX:                      "INVALID_SYNTAX",
	INVALID_MESSAGE_ID:                  "INVALID_MESSAGE_ID",
	INVALID_SPI:                         "INVALID_SPI",
	NO_PROPOSAL_CHOSEN:                  "NO_PROPOSAL_CHOSEN",
	INVALID_KE_PAYLOAD:                  "INVALID_KE_PAYLOAD",
	AUTHENTICATION_FAILED:               "AUTHENTICATION_FAILED",
	SINGLE_PAIR_REQUIRED:                "SINGLE_PAIR_REQUIRED",
	NO_ADDITIONAL_SAS:                   "NO_ADDITIONAL_SAS",
	INTERNAL_ADDRESS_FAILURE:            "INTERNAL_ADDRESS_FAILURE",
	FAILED_CP_REQUIRED:                  "FAILED_CP_REQUIRED",
	TS_UNACCEPTABLE:                     "TS_UNACCEPTABLE",
	INVALID_SELECTORS:                   "INVALID_SELECTORS",
	UNACCEPTABLE_ADDRESSES:              "UNACCEPTABLE_ADDRESSES",
	UNEXPECTED_NAT_DETECTED:             "UNEXPECTED_NAT_DETECTED",
	USE_ASSIGNED_HoA:                    "USE_ASSIGNED_HoA",
	TEMPORARY_FAILURE:                   "TEMPORARY_FAILURE",
	CHILD_SA_NOT_FOUND:                  "CHILD_SA_NOT_FOUND",
	INVALID_GROUP_ID:                    "INVALID_GROUP_ID",
	AUTHORIZATION_FAILED:                "AUTHORIZATION_FAILED",
	STATE_NOT_FOUND:                     "STATE_NOT_FOUND",
	INITIAL_CONTACT:                     "INITIAL_CONTACT",
	SET_WINDOW_SIZE:                     "SET_WINDOW_SIZE",
	ADDITIONAL_TS_POSSIBLE:              "ADDITIONAL_TS_POSSIBLE",
	IPCOMP_SUPPORTED:                    "IPCOMP_SUPPORTED",
	NAT_DETECTION_SOURCE_IP:             "NAT_DETECTION_SOURCE_IP",
	NAT_DETECTION_DESTINATION_IP:        "NAT_DETECTION_DESTINATION_IP",
	COOKIE:                              "COOKIE",
	USE_TRANSPORT_MODE:                  "USE_TRANSPORT_MODE",
	HTTP_CERT_LOOKUP_SUPPORTED:          "HTTP_CERT_LOOKUP_SUPPORTED",
	REKEY_SA:                            "REKEY_SA",
	ESP_TFC_PADDING_NOT_SUPPORTED:       "ESP_TFC_PADDING_NOT_SUPPORTED",
	NON_FIRST_FRAGMENTS_ALSO:            "NON_FIRST_FRAGMENTS_ALSO",
	MOBIKE_SUPPORTED:                    "MOBIKE_SUPPORTED",
	ADDITIONAL_IP4_ADDRESS:              "ADDITIONAL_IP4_ADDRESS",
	ADDITIONAL_IP6_ADDRESS:              "ADDITIONAL_IP6_ADDRESS",
	NO_ADDITIONAL_ADDRESSES:             "NO_ADDITIONAL_ADDRESSES",
	UPDATE_SA_ADDRESSES:                 "UPDATE_SA_ADDRESSES",
	COOKIE2:                             "COOKIE2",
	NO_NATS_ALLOWED:                     "NO_NATS_ALLOWED",
	AUTH_LIFETIME:                       "AUTH_LIFETIME",
	MULTIPLE_AUTH_SUPPORTED:             "MULTIPLE_AUTH_SUPPORTED",
	ANOTHER_AUTH_FOLLOWS:                "ANOTHER_AUTH_FOLLOWS",
	REDIRECT_SUPPORTED:                  "REDIRECT_SUPPORTED",
	REDIRECT:                            "REDIRECT",
	REDIRECTED_FROM:                     "REDIRECTED_FROM",
	TICKET_LT_OPAQUE:                    "TICKET_LT_OPAQUE",
	TICKET_REQUEST:                      "TICKET_REQUEST",
	TICKET_ACK:                          "TICKET_ACK",
	TICKET_NACK:                         "TICKET_NACK",
	TICKET_OPAQUE:                       "TICKET_OPAQUE",
	LINK_ID:                             "LINK_ID",
	USE_WESP_MODE:                       "USE_WESP_MODE",
	ROHC_SUPPORTED:                      "ROHC_SUPPORTED",
	EAP_ONLY_AUTHENTICATION:             "EAP_ONLY_AUTHENTICATION",
	CHILDLESS_IKEV2_SUPPORTED:           "CHILDLESS_IKEV2_SUPPORTED",
	QUICK_CRASH_DETECTION:               "QUICK_CRASH_DETECTION",
	IKEV2_MESSAGE_ID_SYNC_SUPPORTED:     "IKEV2_MESSAGE_ID_SYNC_SUPPORTED",
	IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED: "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED",
	IKEV2_MESSAGE_ID_SYNC:               "IKEV2_MESSAGE_ID_SYNC",
	IPSEC_REPLAY_COUNTER_SYNC:           "IPSEC_REPLAY_COUNTER_SYNC",
	SECURE_PASSWORD_METHODS:             "SECURE_PASSWORD_METHODS",
	PSK_PERSIST:                         "PSK_PERSIST",
	PSK_CONFIRM:                         "PSK_CONFIRM",
	ERX_SUPPORTED:                       "ERX_SUPPORTED",
	IFOM_CAPABILITY:                     "IFOM_CAPABILITY",
	SENDER_REQUEST_ID:                   "SENDER_REQUEST_ID",
	IKEV2_FRAGMENTATION_SUPPORTED:       "IKEV2_FRAGMENTATION_SUPPORTED",
	SIGNATURE_HASH_ALGORITHMS:           "SIGNATURE_HASH_ALGORITHMS",
	CLONE_IKE_SA_SUPPORTED:              "CLONE_IKE_SA_SUPPORTED",
	CLONE_IKE_SA:                        "CLONE_IKE_SA",
	PUZZLE:                              "PUZZLE",
	USE_PPK:                             "USE_PPK",
	PPK_IDENTITY:                        "PPK_IDENTITY",
	NO_PPK_AUTH:                         "NO_PPK_AUTH",
	INTERMEDIATE_EXCHANGE_SUPPORTED:     "INTERMEDIATE_EXCHANGE_SUPPORTED",
	IP4_ALLOWED:                         "IP4_ALLOWED",
	IP6_ALLOWED:                         "IP6_ALLOWED",
	ADDITIONAL_KEY_EXCHANGE:             "ADDITIONAL_KEY_EXCHANGE",
}

func (t NotifyType) String() string { return enumString(notifyNames, t, "NotifyType") }

// IsError reports whether t is in the error range (below 16384). An
// unrecognized error type in a response means the request failed (RFC 7296
// §3.10.1); an unrecognized status type is ignored.
func (t NotifyType) IsError() bool { return t < 16384 }
