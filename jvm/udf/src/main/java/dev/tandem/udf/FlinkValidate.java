package dev.tandem.udf;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.catalog.DataTypeFactory;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.inference.TypeInference;
import org.apache.flink.table.types.inference.TypeStrategies;
import org.apache.flink.types.Row;

/**
 * {@code tandem_validate(line)}: {@link RecordValidator} as a Flink scalar function.
 *
 * <p>Returns {@code ROW<status STRING, not_after BIGINT, <schema fields>>}: status
 * {@code ok|invalid|blank}; {@code not_after} the latest event time accepted when
 * the line was checked (wall clock + max future; null for no bound), which the job
 * hands to Python to explain an invalid line with the same bound; the typed fields
 * for {@code ok}, nulls otherwise.
 *
 * <p>Not deterministic (it reads the wall clock), which also keeps the planner from
 * calling it once per accessed field of its result.
 */
public final class FlinkValidate extends ScalarFunction {
    private final String spec;
    private final long maxFutureMs; // < 0: no bound
    private transient RecordValidator validator;
    private transient Object[] values;

    public FlinkValidate(String spec, long maxFutureMs) {
        this.spec = spec;
        this.maxFutureMs = maxFutureMs;
        new RecordValidator(spec); // a bad spec fails at registration, not in a task
    }

    public Row eval(String line) {
        if (validator == null) {
            validator = new RecordValidator(spec);
            values = new Object[validator.width()];
        }
        Long notAfter = maxFutureMs < 0 ? null : System.currentTimeMillis() + maxFutureMs;
        int status = validator.validate(line, notAfter == null ? Long.MAX_VALUE : notAfter, values);
        Row row = Row.withPositions(2 + values.length);
        row.setField(0, RecordValidator.STATUS.get(status));
        row.setField(1, notAfter);
        if (status == RecordValidator.OK) for (int i = 0; i < values.length; i++) row.setField(2 + i, values[i]);
        return row;
    }

    @Override
    public boolean isDeterministic() {
        return false;
    }

    @Override
    public TypeInference getTypeInference(DataTypeFactory typeFactory) {
        RecordValidator v = new RecordValidator(spec);
        List<DataTypes.Field> fields = new ArrayList<>();
        fields.add(DataTypes.FIELD("status", DataTypes.STRING()));
        fields.add(DataTypes.FIELD("not_after", DataTypes.BIGINT()));
        for (int i = 0; i < v.width(); i++) fields.add(DataTypes.FIELD(v.name(i), type(v.type(i))));
        DataType output = DataTypes.ROW(fields).bridgedTo(Row.class);
        return TypeInference.newBuilder()
                .typedArguments(DataTypes.STRING())
                .outputTypeStrategy(TypeStrategies.explicit(output))
                .build();
    }

    private static DataType type(RecordValidator.Type type) {
        return switch (type) {
            case STRING -> DataTypes.STRING();
            case FLOAT64 -> DataTypes.DOUBLE();
            case INT64, TIMESTAMP_MS -> DataTypes.BIGINT();
            case BOOL -> DataTypes.BOOLEAN();
        };
    }
}
