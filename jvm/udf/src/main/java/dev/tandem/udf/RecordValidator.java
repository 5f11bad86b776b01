package dev.tandem.udf;

import java.time.DateTimeException;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The stream path's verdict on one raw line: blank, invalid, or the typed event. Engine-free.
 *
 * <p>It is the JVM twin of {@code tandem.events_io.decode_json_line} followed by
 * {@code transforms.schema.EventSchema.validate}, so that valid records never
 * cross into a Python worker. It must agree with them exactly on which lines
 * are valid and on every typed value; {@code tests/test_jvm_validation.py}
 * checks that on adversarial lines. It does not say <em>why</em> a line is
 * invalid: the job asks Python for the kind and detail of the few invalid
 * lines, so the dead letters' words stay defined once.
 *
 * <p>The Python rules it follows: {@code json.loads} with duplicate keys
 * refused (JSON whitespace is space, tab, CR and LF; {@code NaN},
 * {@code Infinity} and {@code -Infinity} are numbers; a number with a fraction
 * or exponent is a float, else an int of any size); the record must be an
 * object whose keys all name schema fields; a field's value is read by its
 * type as {@code transforms.schema} documents, then checked by its domain rule;
 * an optional field that is absent or JSON {@code null} is null.
 * Every field of the schema is a scalar, so a nested value anywhere makes the
 * record invalid, whatever it holds.
 *
 * <p>Spec text (written by {@code stream_jobs/compile_catalog.validation_spec}):
 * {@code time=<event time field>;<field>=<type>/<rule>/<required|optional>;...}
 * in schema order; types {@code string|float64|int64|timestamp_ms|bool}; rules
 * {@code none|non_empty|finite_non_negative|currency_code}.
 */
public final class RecordValidator {
    public static final int OK = 0, INVALID = 1, BLANK = 2;
    /** The status words, by status: the stream job's ({@code stream_jobs/pipeline.py} OK, INVALID, BLANK). */
    public static final List<String> STATUS = List.of("ok", "invalid", "blank");
    static final long MIN_EVENT_TIME_MS = 1, MAX_EVENT_TIME_MS = 4_102_444_800_000L, MAX_EXACT_INT = 1L << 53;

    enum Type { STRING, FLOAT64, INT64, TIMESTAMP_MS, BOOL }

    enum Rule { NONE, NON_EMPTY, FINITE_NON_NEGATIVE, CURRENCY_CODE }

    private final String[] names;
    private final Type[] types;
    private final Rule[] rules;
    private final boolean[] required;
    private final int eventTime;
    private final Map<String, Integer> index = new HashMap<>();

    public RecordValidator(String spec) {
        List<String> n = new ArrayList<>();
        List<Type> t = new ArrayList<>();
        List<Rule> r = new ArrayList<>();
        List<Boolean> q = new ArrayList<>();
        String time = null;
        for (String part : spec.split(";")) {
            int eq = part.indexOf('=');
            if (eq <= 0) throw new IllegalArgumentException("validation spec part '" + part + "' is not name=value");
            String key = part.substring(0, eq), value = part.substring(eq + 1);
            if (key.equals("time")) {
                time = value;
                continue;
            }
            String[] bits = value.split("/", -1);
            if (bits.length != 3 || !(bits[2].equals("required") || bits[2].equals("optional")))
                throw new IllegalArgumentException("validation spec field '" + part + "' is not name=type/rule/required|optional");
            n.add(key);
            t.add(Type.valueOf(bits[0].toUpperCase()));
            r.add(Rule.valueOf(bits[1].toUpperCase()));
            q.add(bits[2].equals("required"));
        }
        names = n.toArray(new String[0]);
        types = t.toArray(new Type[0]);
        rules = r.toArray(new Rule[0]);
        required = new boolean[q.size()];
        for (int i = 0; i < names.length; i++) {
            required[i] = q.get(i);
            if (index.put(names[i], i) != null) throw new IllegalArgumentException("validation spec names " + names[i] + " twice");
        }
        Integer timeIndex = time == null ? null : index.get(time);
        if (timeIndex == null || types[timeIndex] != Type.TIMESTAMP_MS)
            throw new IllegalArgumentException("validation spec: time= must name a timestamp_ms field");
        eventTime = timeIndex;
    }

    public int width() {
        return names.length;
    }

    public String name(int i) {
        return names[i];
    }

    public Type type(int i) {
        return types[i];
    }

    /**
     * Fills {@code out} (one slot per field, schema order) and returns {@link #OK};
     * or returns {@link #INVALID} or {@link #BLANK}, leaving {@code out} unspecified.
     *
     * @param notAfterMs the latest event time accepted, or {@code Long.MAX_VALUE} for no bound
     */
    public int validate(String line, long notAfterMs, Object[] out) {
        if (isBlank(line)) return BLANK;
        Parser p = new Parser(line);
        boolean[] seen = new boolean[names.length];
        Object[] raw = new Object[names.length];
        try {
            p.skipWhitespace();
            p.expect('{');
            p.skipWhitespace();
            if (!p.eat('}')) {
                do {
                    p.skipWhitespace();
                    Integer i = index.get(p.string());
                    if (i == null || seen[i]) return INVALID; // unknown field, or a duplicate key
                    seen[i] = true;
                    p.skipWhitespace();
                    p.expect(':');
                    p.skipWhitespace();
                    raw[i] = p.scalar();
                    p.skipWhitespace();
                } while (p.eat(','));
                p.expect('}');
            }
            p.skipWhitespace();
            if (!p.atEnd()) return INVALID; // extra data
        } catch (Parser.Refused e) {
            return INVALID;
        }
        for (int i = 0; i < names.length; i++) {
            Object v = raw[i];
            if (v == null || v == Parser.NULL) {
                if (required[i]) return INVALID;
                out[i] = null;
                continue;
            }
            Object typed = read(types[i], v);
            if (typed == null || !allowed(rules[i], typed)) return INVALID;
            if (i == eventTime && (Long) typed > notAfterMs) return INVALID;
            out[i] = typed;
        }
        return OK;
    }

    /**
     * The verdicts on {@code lines} (each as {@code <UTF-16 length>:<line>}, concatenated), one per line,
     * for the cross-check against Python
     * ({@code tests/test_jvm_validation.py}): {@code blank}, {@code invalid}, or {@code ok} followed by
     * each value as {@code \tn} (null), {@code \tl<long>}, {@code \td<double bits as hex>},
     * {@code \tbtrue}, {@code \tbfalse} or {@code \ts<UTF-16 code units, 4 hex digits each>}.
     */
    public static String verdicts(String spec, String lines, long notAfterMs) {
        RecordValidator v = new RecordValidator(spec);
        Object[] values = new Object[v.width()];
        StringBuilder out = new StringBuilder();
        for (int at = 0; at < lines.length(); ) {
            int colon = lines.indexOf(':', at), end = colon + 1 + Integer.parseInt(lines.substring(at, colon));
            String line = lines.substring(colon + 1, end);
            at = end;
            int status = v.validate(line, notAfterMs, values);
            out.append(STATUS.get(status));
            if (status == OK) {
                for (Object value : values) {
                    out.append('\t');
                    if (value == null) out.append('n');
                    else if (value instanceof Long) out.append('l').append(value);
                    else if (value instanceof Double) out.append('d').append(Long.toHexString(Double.doubleToRawLongBits((Double) value)));
                    else if (value instanceof Boolean) out.append('b').append(value);
                    else {
                        out.append('s');
                        for (char c : ((String) value).toCharArray()) out.append(String.format("%04x", (int) c));
                    }
                }
            }
            out.append('\n');
        }
        return out.toString();
    }

    /** The value of a field of type {@code type} for raw JSON value {@code v}, or null if it is not one. */
    private static Object read(Type type, Object v) {
        switch (type) {
            case STRING:
                return v instanceof String && wellFormed((String) v) ? v : null;
            case FLOAT64:
                if (v instanceof Long) {
                    long x = (Long) v;
                    return x >= -MAX_EXACT_INT && x <= MAX_EXACT_INT ? (double) x : null;
                }
                if (v instanceof Double) {
                    double x = (Double) v;
                    return x == 0 ? 0.0 : x; // -0.0 is read as 0.0
                }
                return null;
            case INT64:
                return v instanceof Long ? v : null;
            case TIMESTAMP_MS:
                Long ms = v instanceof Long ? (Long) v : v instanceof String ? isoMillis((String) v) : null;
                return ms != null && ms >= MIN_EVENT_TIME_MS && ms < MAX_EVENT_TIME_MS ? ms : null;
            case BOOL:
                return v instanceof Boolean ? v : null; // JSON true or false only: not 0/1, not "true"
            default:
                throw new AssertionError(type);
        }
    }

    private static boolean allowed(Rule rule, Object v) {
        switch (rule) {
            case NONE:
                return true;
            case NON_EMPTY:
                return !((String) v).isEmpty();
            case FINITE_NON_NEGATIVE:
                double x = (Double) v;
                return Double.isFinite(x) && x >= 0;
            case CURRENCY_CODE:
                String s = (String) v;
                if (s.length() != 3) return false;
                for (int i = 0; i < 3; i++) if (s.charAt(i) < 'A' || s.charAt(i) > 'Z') return false;
                return true;
            default:
                throw new AssertionError(rule);
        }
    }

    /** No unpaired surrogate: the text is valid Unicode (Python refuses to encode it otherwise). */
    static boolean wellFormed(String s) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (Character.isHighSurrogate(c)) {
                if (i + 1 >= s.length() || !Character.isLowSurrogate(s.charAt(i + 1))) return false;
                i++;
            } else if (Character.isLowSurrogate(c)) {
                return false;
            }
        }
        return true;
    }

    /** Python's {@code str.isspace} characters: a line of only these is skipped, as {@code line.strip()} does. */
    static boolean isBlank(String line) {
        for (int i = 0; i < line.length(); i++) if (!pythonSpace(line.charAt(i))) return false;
        return true;
    }

    private static boolean pythonSpace(char c) {
        if (c <= 0x20) return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
        return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029
                || c == 0x202f || c == 0x205f || c == 0x3000;
    }

    /**
     * UTC epoch ms of {@code YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)} (ASCII digits, a fraction of
     * 1-9 digits whose digits past the millisecond are zero, a real calendar date-time), else null.
     */
    static Long isoMillis(String s) {
        int n = s.length();
        if (n < 20 || !digits(s, 0, 4) || s.charAt(4) != '-' || !digits(s, 5, 7) || s.charAt(7) != '-'
                || !digits(s, 8, 10) || s.charAt(10) != 'T' || !digits(s, 11, 13) || s.charAt(13) != ':'
                || !digits(s, 14, 16) || s.charAt(16) != ':' || !digits(s, 17, 19)) return null;
        int i = 19, millis = 0;
        if (s.charAt(i) == '.') {
            int start = ++i;
            while (i < n && i - start < 9 && isDigit(s.charAt(i))) i++;
            int len = i - start;
            if (len == 0) return null;
            for (int k = 0; k < 3; k++) millis = millis * 10 + (k < len ? s.charAt(start + k) - '0' : 0);
            for (int k = start + 3; k < i; k++) if (s.charAt(k) != '0') return null; // finer than a millisecond
        }
        long offsetMs;
        if (i == n - 1 && s.charAt(i) == 'Z') {
            offsetMs = 0;
        } else if (i == n - 6 && (s.charAt(i) == '+' || s.charAt(i) == '-') && digits(s, i + 1, i + 3)
                && s.charAt(i + 3) == ':' && digits(s, i + 4, i + 6)) {
            int oh = number(s, i + 1, i + 3), om = number(s, i + 4, i + 6);
            if (oh > 23 || om > 59) return null;
            offsetMs = (s.charAt(i) == '+' ? 1 : -1) * (oh * 60L + om) * 60_000L;
        } else {
            return null;
        }
        int year = number(s, 0, 4), hour = number(s, 11, 13), minute = number(s, 14, 16), second = number(s, 17, 19);
        if (year < 1 || hour > 23 || minute > 59 || second > 59) return null;
        long day;
        try {
            day = LocalDate.of(year, number(s, 5, 7), number(s, 8, 10)).toEpochDay();
        } catch (DateTimeException e) {
            return null;
        }
        return ((day * 24 + hour) * 60 + minute) * 60_000L + second * 1000L + millis - offsetMs;
    }

    private static boolean isDigit(char c) {
        return c >= '0' && c <= '9';
    }

    private static boolean digits(String s, int from, int to) {
        if (to > s.length()) return false;
        for (int i = from; i < to; i++) if (!isDigit(s.charAt(i))) return false;
        return true;
    }

    private static int number(String s, int from, int to) {
        int v = 0;
        for (int i = from; i < to; i++) v = v * 10 + (s.charAt(i) - '0');
        return v;
    }

    /**
     * A JSON reader for one flat object, following Python's {@code json} scanner. Raw values: String,
     * Long, Double, Boolean, {@link #NULL}, or {@link #BIG_INT} for an integer outside int64.
     */
    static final class Parser {
        static final Object NULL = new Object(), BIG_INT = new Object();

        static final class Refused extends Exception {
            Refused() {
                super(null, null, false, false);
            }
        }

        private static final Refused REFUSED = new Refused();
        private final char[] s; // a copy: indexing a String costs a coder check per char
        private final int n;
        private int i;

        Parser(String line) {
            s = line.toCharArray();
            n = s.length;
        }

        boolean atEnd() {
            return i == n;
        }

        void skipWhitespace() {
            while (i < n) {
                char c = s[i];
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
                i++;
            }
        }

        boolean eat(char c) {
            if (i < n && s[i] == c) {
                i++;
                return true;
            }
            return false;
        }

        void expect(char c) throws Refused {
            if (!eat(c)) throw REFUSED;
        }

        /** A scalar value; an object or array (never a valid field value) is refused. */
        Object scalar() throws Refused {
            if (i >= n) throw REFUSED;
            char c = s[i];
            if (c == '"') return string();
            if (c == '-' || isDigit(c)) return number();
            if (literal("null")) return NULL;
            if (literal("true")) return Boolean.TRUE;
            if (literal("false")) return Boolean.FALSE;
            if (literal("NaN")) return Double.NaN;
            if (literal("Infinity")) return Double.POSITIVE_INFINITY;
            throw REFUSED;
        }

        private boolean literal(String word) {
            if (i + word.length() > n) return false;
            for (int k = 0; k < word.length(); k++) if (s[i + k] != word.charAt(k)) return false;
            i += word.length();
            return true;
        }

        /** {@code -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?}, or {@code -Infinity}. */
        private Object number() throws Refused {
            int start = i;
            if (eat('-') && literal("Infinity")) return Double.NEGATIVE_INFINITY;
            if (eat('0')) {
                // a leading zero stands alone: "01" leaves "1", which no caller accepts next
            } else if (i < n && s[i] >= '1' && s[i] <= '9') {
                while (i < n && isDigit(s[i])) i++;
            } else {
                throw REFUSED;
            }
            boolean isFloat = false;
            if (i + 1 < n && s[i] == '.' && isDigit(s[i + 1])) {
                i += 2;
                while (i < n && isDigit(s[i])) i++;
                isFloat = true;
            }
            if (i < n && (s[i] == 'e' || s[i] == 'E')) {
                int mark = i++;
                if (i < n && (s[i] == '+' || s[i] == '-')) i++;
                int digitsFrom = i;
                while (i < n && isDigit(s[i])) i++;
                if (i == digitsFrom) i = mark; // not an exponent: Python stops before the 'e'
                else isFloat = true;
            }
            String text = new String(s, start, i - start);
            if (isFloat) return Double.parseDouble(text); // correctly rounded, as Python's float()
            // an int beyond int64 is never a valid field value (and past 4300 digits Python refuses it)
            return text.length() > 20 ? BIG_INT : parseLong(text);
        }

        private static Object parseLong(String text) {
            try {
                return Long.parseLong(text);
            } catch (NumberFormatException e) {
                return BIG_INT;
            }
        }

        /** A JSON string at the current position; control characters (below U+0020) are refused, as Python's strict mode does. */
        String string() throws Refused {
            expect('"');
            int start = i;
            while (i < n) { // fast path: no escapes
                char c = s[i];
                if (c == '"') return new String(s, start, i++ - start);
                if (c == '\\' || c < 0x20) break;
                i++;
            }
            StringBuilder b = new StringBuilder(n - start).append(s, start, i - start);
            while (i < n) {
                char c = s[i++];
                if (c == '"') return b.toString();
                if (c < 0x20) throw REFUSED;
                if (c != '\\') {
                    b.append(c);
                    continue;
                }
                if (i >= n) throw REFUSED;
                char e = s[i++];
                switch (e) {
                    case '"': case '\\': case '/': b.append(e); break;
                    case 'b': b.append('\b'); break;
                    case 'f': b.append('\f'); break;
                    case 'n': b.append('\n'); break;
                    case 'r': b.append('\r'); break;
                    case 't': b.append('\t'); break;
                    case 'u':
                        if (i + 4 > n) throw REFUSED;
                        int code = 0;
                        for (int k = 0; k < 4; k++) {
                            int d = Character.digit(s[i + k], 16);
                            if (d < 0 || s[i + k] > 'f') throw REFUSED; // ASCII hex digits only
                            code = code * 16 + d;
                        }
                        i += 4;
                        b.append((char) code); // a surrogate pair is two escapes; UTF-16 joins them as Python does
                        break;
                    default:
                        throw REFUSED;
                }
            }
            throw REFUSED; // unterminated
        }
    }
}
