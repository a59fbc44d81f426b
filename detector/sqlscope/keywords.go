package sqlscope

// The keywords the statement model reads, found by a perfect-enough hash
// of the folded word.

const (
	kwNone uint8 = iota
	kwAll
	kwAnd
	kwAny
	kwApply
	kwArray
	kwAs
	kwBetween
	kwBinary
	kwBy
	kwCase
	kwCast
	kwCross
	kwCurrentRole
	kwCurrentSchema
	kwCurrentUser
	kwDate
	kwDefault
	kwDelayed
	kwDelete
	kwDistinct
	kwElse
	kwEnd
	kwExcept
	kwExists
	kwFalse
	kwFetch
	kwFor
	kwForce
	kwFrom
	kwFull
	kwGlob
	kwGroup
	kwHaving
	kwHighPriority
	kwIgnore
	kwIlike
	kwIn
	kwInner
	kwInsert
	kwIntersect
	kwInterval
	kwInto
	kwIs
	kwJoin
	kwLateral
	kwLeft
	kwLike
	kwLimit
	kwLowPriority
	kwMaterialized
	kwMinus
	kwNatural
	kwNot
	kwNull
	kwOffset
	kwOn
	kwOnly
	kwOr
	kwOrder
	kwOuter
	kwOutput
	kwPartition
	kwPercent
	kwQualify
	kwQuick
	kwRecursive
	kwRegexp
	kwReplace
	kwReturning
	kwRight
	kwRlike
	kwSelect
	kwSessionUser
	kwSet
	kwSimilar
	kwSome
	kwStraightJoin
	kwTable
	kwTablesample
	kwThen
	kwTime
	kwTimestamp
	kwTop
	kwTrue
	kwUnion
	kwUpdate
	kwUse
	kwUser
	kwUsing
	kwValue
	kwValues
	kwWhen
	kwWhere
	kwWindow
	kwWith
	kwXor
	kwCount
)

// Keyword properties.
const (
	kfReserved = 1 << iota // never a table name or an alias
	kfValue                // starts a value: TRUE, CURRENT_USER, ARRAY[...], ANY(...)
	kfTrailing             // a statement ending in it was cut short
	kfModifier             // skipped between INSERT/UPDATE/DELETE and the table
)

var sqlKeywords = [...]struct {
	word  string
	kw    uint8
	flags uint8
}{
	{"all", kwAll, kfReserved | kfValue | kfTrailing},
	{"and", kwAnd, kfReserved | kfTrailing},
	{"any", kwAny, kfValue | kfTrailing},
	{"apply", kwApply, kfReserved},
	{"array", kwArray, kfValue},
	{"as", kwAs, kfReserved | kfTrailing},
	{"between", kwBetween, kfReserved | kfTrailing},
	{"binary", kwBinary, kfValue},
	{"by", kwBy, kfReserved | kfTrailing},
	{"case", kwCase, kfReserved | kfTrailing},
	{"cast", kwCast, kfValue},
	{"cross", kwCross, kfReserved | kfTrailing},
	{"current_role", kwCurrentRole, kfValue},
	{"current_schema", kwCurrentSchema, kfValue},
	{"current_user", kwCurrentUser, kfValue},
	{"date", kwDate, kfValue},
	{"default", kwDefault, kfReserved},
	{"delayed", kwDelayed, kfModifier},
	{"delete", kwDelete, kfReserved},
	{"distinct", kwDistinct, kfReserved | kfTrailing},
	{"else", kwElse, kfReserved | kfTrailing},
	{"end", kwEnd, kfReserved},
	{"except", kwExcept, kfReserved | kfTrailing},
	{"exists", kwExists, kfReserved | kfTrailing},
	{"false", kwFalse, kfValue},
	{"fetch", kwFetch, kfReserved},
	{"for", kwFor, kfReserved},
	{"force", kwForce, kfReserved},
	{"from", kwFrom, kfReserved | kfTrailing},
	{"full", kwFull, kfReserved | kfTrailing},
	{"glob", kwGlob, kfReserved | kfTrailing},
	{"group", kwGroup, kfReserved | kfTrailing},
	{"having", kwHaving, kfReserved | kfTrailing},
	{"high_priority", kwHighPriority, kfModifier},
	{"ignore", kwIgnore, kfReserved | kfModifier},
	{"ilike", kwIlike, kfReserved | kfTrailing},
	{"in", kwIn, kfReserved | kfTrailing},
	{"inner", kwInner, kfReserved | kfTrailing},
	{"insert", kwInsert, kfReserved},
	{"intersect", kwIntersect, kfReserved | kfTrailing},
	{"interval", kwInterval, kfValue},
	{"into", kwInto, kfReserved | kfTrailing | kfModifier},
	{"is", kwIs, kfReserved | kfTrailing},
	{"join", kwJoin, kfReserved | kfTrailing},
	{"lateral", kwLateral, kfReserved},
	{"left", kwLeft, kfReserved | kfTrailing},
	{"like", kwLike, kfReserved | kfTrailing},
	{"limit", kwLimit, kfReserved | kfTrailing},
	{"low_priority", kwLowPriority, kfModifier},
	{"materialized", kwMaterialized, 0},
	{"minus", kwMinus, kfReserved},
	{"natural", kwNatural, kfReserved | kfTrailing},
	{"not", kwNot, kfReserved | kfTrailing},
	{"null", kwNull, kfReserved},
	{"offset", kwOffset, kfReserved | kfTrailing},
	{"on", kwOn, kfReserved | kfTrailing},
	{"only", kwOnly, kfReserved},
	{"or", kwOr, kfReserved | kfTrailing | kfModifier},
	{"order", kwOrder, kfReserved | kfTrailing},
	{"outer", kwOuter, kfReserved | kfTrailing},
	{"output", kwOutput, kfReserved},
	{"partition", kwPartition, kfReserved},
	{"percent", kwPercent, 0},
	{"qualify", kwQualify, kfReserved},
	{"quick", kwQuick, kfModifier},
	{"recursive", kwRecursive, kfReserved},
	{"regexp", kwRegexp, kfReserved | kfTrailing},
	{"replace", kwReplace, kfModifier},
	{"returning", kwReturning, kfReserved},
	{"right", kwRight, kfReserved | kfTrailing},
	{"rlike", kwRlike, kfReserved | kfTrailing},
	{"select", kwSelect, kfReserved | kfTrailing},
	{"session_user", kwSessionUser, kfValue},
	{"set", kwSet, kfReserved | kfTrailing},
	{"similar", kwSimilar, kfReserved | kfTrailing},
	{"some", kwSome, kfValue | kfTrailing},
	{"straight_join", kwStraightJoin, kfReserved | kfTrailing},
	{"table", kwTable, kfReserved},
	{"tablesample", kwTablesample, kfReserved},
	{"then", kwThen, kfReserved | kfTrailing},
	{"time", kwTime, kfValue},
	{"timestamp", kwTimestamp, kfValue},
	{"top", kwTop, 0},
	{"true", kwTrue, kfValue},
	{"union", kwUnion, kfReserved | kfTrailing},
	{"update", kwUpdate, kfReserved},
	{"use", kwUse, kfReserved},
	{"user", kwUser, kfValue},
	{"using", kwUsing, kfReserved | kfTrailing},
	{"value", kwValue, 0},
	{"values", kwValues, kfReserved | kfTrailing},
	{"when", kwWhen, kfReserved | kfTrailing},
	{"where", kwWhere, kfReserved | kfTrailing},
	{"window", kwWindow, kfReserved},
	{"with", kwWith, kfReserved | kfTrailing},
	{"xor", kwXor, kfReserved | kfTrailing},
}

const maxKeywordLen = len("current_schema")

type kwSlot struct {
	word string
	hash uint32
	kw   uint8
}

var (
	kwFlags [kwCount]uint8
	kwSlots = func() (t [512]kwSlot) {
		for _, k := range sqlKeywords {
			h := foldHash(k.word)
			j := h & uint32(len(t)-1)
			for t[j].word != "" {
				j = (j + 1) & uint32(len(t)-1)
			}
			t[j] = kwSlot{word: k.word, hash: h, kw: k.kw}
			kwFlags[k.kw] = k.flags
		}
		return t
	}()
)

func keywordOf(h uint32, word string) uint8 {
	for j := h & uint32(len(kwSlots)-1); kwSlots[j].word != ""; j = (j + 1) & uint32(len(kwSlots)-1) {
		if kwSlots[j].hash == h && foldEqual(kwSlots[j].word, word) {
			return kwSlots[j].kw
		}
	}
	return kwNone
}

// keywords is a set of keywords.
type keywords [2]uint64

// kwCount must stay within the 128 bits of keywords: this fails to compile
// otherwise.
var _ = [1]struct{}{}[kwCount>>7]

func keywordSet(kws ...uint8) (s keywords) {
	for _, k := range kws {
		s[k>>6] |= 1 << (k & 63)
	}
	return s
}

func (s *keywords) has(k uint8) bool { return s[k>>6]&(1<<(k&63)) != 0 }

var (
	selectClauses = keywordSet(kwFrom, kwWhere, kwGroup, kwHaving, kwWindow, kwQualify, kwOrder, kwLimit, kwOffset, kwFetch, kwFor, kwInto)
	updateClauses = keywordSet(kwSet, kwFrom, kwWhere, kwReturning, kwOutput, kwOrder, kwLimit)
	deleteClauses = keywordSet(kwFrom, kwUsing, kwWhere, kwReturning, kwOutput, kwOrder, kwLimit)
)
