package dev.tandem.udf;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * BOOL fields and optional fields, as {@code transforms.schema} reads them: a bool is a JSON
 * {@code true} or {@code false} and nothing else; an optional field absent or null is null, a
 * required one is a missing field. ({@code tests/test_jvm_validation.py} compares the validator
 * with the Python one on many more lines.)
 */
class RecordValidatorTest {
    private static final String SPEC = "time=t;id=string/non_empty/required;t=timestamp_ms/none/required;"
            + "ok=bool/none/required;flag=bool/none/optional";

    private static String verdict(String line) {
        String out = RecordValidator.verdicts(SPEC, line.length() + ":" + line, Long.MAX_VALUE);
        return out.substring(0, out.length() - 1);
    }

    @Test
    void aBoolIsJsonTrueOrFalse() {
        assertEquals("ok\ts0061\tl1\tbtrue\tbfalse", verdict("{\"id\": \"a\", \"t\": 1, \"ok\": true, \"flag\": false}"));
        assertEquals("ok\ts0061\tl1\tbfalse\tbtrue", verdict("{\"id\": \"a\", \"t\": 1, \"ok\": false, \"flag\": true}"));
        for (String wrong : List.of("1", "0", "1.0", "\"true\"", "\"false\"", "\"\"", "True", "[true]")) {
            assertEquals("invalid", verdict("{\"id\": \"a\", \"t\": 1, \"ok\": " + wrong + "}"), "ok: " + wrong);
            assertEquals("invalid", verdict("{\"id\": \"a\", \"t\": 1, \"ok\": true, \"flag\": " + wrong + "}"),
                    "flag: " + wrong);
        }
    }

    @Test
    void anOptionalFieldAbsentOrNullIsNullARequiredOneIsInvalid() {
        assertEquals("ok\ts0061\tl1\tbtrue\tn", verdict("{\"id\": \"a\", \"t\": 1, \"ok\": true}"));
        assertEquals("ok\ts0061\tl1\tbtrue\tn", verdict("{\"id\": \"a\", \"t\": 1, \"ok\": true, \"flag\": null}"));
        assertEquals("invalid", verdict("{\"id\": \"a\", \"t\": 1}"));
        assertEquals("invalid", verdict("{\"id\": \"a\", \"t\": 1, \"ok\": null}"));
    }
}
