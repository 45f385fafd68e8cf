package event

// Kind says how a column's text form maps to JSON (DESIGN.md, type mapping).
type Kind uint8

// The kinds of the type mapping. KindText is the zero value on purpose: a
// type pgfeed does not know is still delivered, as Postgres's text form.
const (
	KindText        Kind = iota // any string-like or unknown type: a JSON string
	KindInt                     // smallint, integer, bigint, oid: an exact JSON number
	KindFloat                   // real, double precision: a number, or "NaN"/"Infinity" strings
	KindNumeric                 // numeric: an exact decimal string
	KindBool                    // boolean
	KindJSON                    // json, jsonb: the JSON value itself
	KindBytea                   // bytea: base64
	KindDate                    // date: "2026-11-23"
	KindTimestamp               // timestamp without time zone: "2026-11-23T04:56:29.368123"
	KindTimestamptz             // timestamp with time zone: RFC 3339 in UTC
	KindArray                   // an array of Type.Elem
)

// Type describes a column type as far as encoding needs to know it.
type Type struct {
	OID  uint32
	Name string // as format_type prints it without modifiers: "integer", "text[]", "public.mood"
	Kind Kind
	Elem *Type // element type of an array
	// Delim separates elements in the text form of an array of this type
	// (pg_type.typdelim): ',' for every built-in type but box, which uses ';'.
	Delim byte
}

// builtin maps the OIDs of PostgreSQL's built-in types, which never change
// between versions, to their Type. Types not listed here are looked up in
// the catalog by the source.
var builtin = map[uint32]*Type{}

func init() {
	scalars := []struct {
		oid, arrayOID uint32
		name          string
		kind          Kind
	}{
		{16, 1000, "boolean", KindBool},
		{17, 1001, "bytea", KindBytea},
		{18, 1002, "\"char\"", KindText},
		{19, 1003, "name", KindText},
		{20, 1016, "bigint", KindInt},
		{21, 1005, "smallint", KindInt},
		{23, 1007, "integer", KindInt},
		{24, 1008, "regproc", KindText},
		{25, 1009, "text", KindText},
		{26, 1028, "oid", KindInt},
		{27, 1010, "tid", KindText},
		{28, 1011, "xid", KindInt},
		{29, 1012, "cid", KindInt},
		{114, 199, "json", KindJSON},
		{142, 143, "xml", KindText},
		{600, 1017, "point", KindText},
		{601, 1018, "lseg", KindText},
		{602, 1019, "path", KindText},
		{603, 1020, "box", KindText},
		{604, 1027, "polygon", KindText},
		{628, 629, "line", KindText},
		{650, 651, "cidr", KindText},
		{700, 1021, "real", KindFloat},
		{701, 1022, "double precision", KindFloat},
		{718, 719, "circle", KindText},
		{774, 775, "macaddr8", KindText},
		{790, 791, "money", KindText},
		{829, 1040, "macaddr", KindText},
		{869, 1041, "inet", KindText},
		{1042, 1014, "character", KindText},
		{1043, 1015, "character varying", KindText},
		{1082, 1182, "date", KindDate},
		{1083, 1183, "time without time zone", KindText},
		{1114, 1115, "timestamp without time zone", KindTimestamp},
		{1184, 1185, "timestamp with time zone", KindTimestamptz},
		{1186, 1187, "interval", KindText},
		{1266, 1270, "time with time zone", KindText},
		{1560, 1561, "bit", KindText},
		{1562, 1563, "bit varying", KindText},
		{1700, 1231, "numeric", KindNumeric},
		{2950, 2951, "uuid", KindText},
		{3220, 3221, "pg_lsn", KindText},
		{3614, 3643, "tsvector", KindText},
		{3615, 3645, "tsquery", KindText},
		{3802, 3807, "jsonb", KindJSON},
		{3904, 3905, "int4range", KindText},
		{3906, 3907, "numrange", KindText},
		{3908, 3909, "tsrange", KindText},
		{3910, 3911, "tstzrange", KindText},
		{3912, 3913, "daterange", KindText},
		{3926, 3927, "int8range", KindText},
		{4072, 4073, "jsonpath", KindText},
		{4451, 6150, "int4multirange", KindText},
		{4532, 6151, "nummultirange", KindText},
		{4533, 6152, "tsmultirange", KindText},
		{4534, 6153, "tstzmultirange", KindText},
		{4535, 6155, "datemultirange", KindText},
		{4536, 6157, "int8multirange", KindText},
		{5038, 5039, "pg_snapshot", KindText},
		{2205, 2210, "regclass", KindText},
		{2206, 2211, "regtype", KindText},
	}
	for _, s := range scalars {
		t := &Type{OID: s.oid, Name: s.name, Kind: s.kind, Delim: ','}
		if s.oid == 603 {
			t.Delim = ';'
		}
		builtin[s.oid] = t
		builtin[s.arrayOID] = &Type{OID: s.arrayOID, Name: s.name + "[]", Kind: KindArray, Elem: t, Delim: ','}
	}
	builtin[2249] = &Type{OID: 2249, Name: "record", Kind: KindText, Delim: ','}
	builtin[2287] = &Type{OID: 2287, Name: "record[]", Kind: KindArray, Elem: builtin[2249], Delim: ','}
}

// BuiltinType returns the Type of a built-in OID, or nil when the OID is not
// a built-in type and must be looked up in the catalog.
func BuiltinType(oid uint32) *Type { return builtin[oid] }

// UnknownType is what a column gets when its type cannot be resolved (for
// example a type dropped since the change was written): its values are kept
// as Postgres's text form.
func UnknownType(oid uint32) *Type {
	return &Type{OID: oid, Name: "unknown", Kind: KindText, Delim: ','}
}
