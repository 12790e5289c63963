// A stand-in for the OpenTelemetry Java agent in the end-to-end test, which cannot download
// the real one (Maven Central is not reachable from the test machines; the release workflow
// loads the real jar). Its premain builds a resource as the real agent does, from
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (percent-decoded), and exports one span over
// OTLP/HTTP (JSON) to OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces before the app's main runs.
// Java 8 source, as the real agent supports Java 8.

import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.lang.instrument.Instrumentation;
import java.net.HttpURLConnection;
import java.net.URL;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

public final class AgentStandIn {
    private AgentStandIn() {}

    public static void premain(String options, Instrumentation instrumentation) throws Exception {
        Map<String, String> resource = new LinkedHashMap<>();
        String attributes = System.getenv("OTEL_RESOURCE_ATTRIBUTES");
        if (attributes != null) {
            for (String pair : attributes.split(",")) {
                int eq = pair.indexOf('=');
                if (eq > 0) {
                    resource.put(decode(pair.substring(0, eq).trim()), decode(pair.substring(eq + 1).trim()));
                }
            }
        }
        String service = System.getenv("OTEL_SERVICE_NAME");
        if (service != null && !service.isEmpty()) {
            resource.put("service.name", service);
        }
        resource.putIfAbsent("service.name", "unknown_service:java");
        resource.put("telemetry.sdk.language", "java");

        StringBuilder json = new StringBuilder("{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
        boolean first = true;
        for (Map.Entry<String, String> entry : resource.entrySet()) {
            json.append(first ? "" : ",").append("{\"key\":").append(quote(entry.getKey()))
                .append(",\"value\":{\"stringValue\":").append(quote(entry.getValue())).append("}}");
            first = false;
        }
        long now = System.currentTimeMillis() * 1_000_000L;
        json.append("]},\"scopeSpans\":[{\"scope\":{\"name\":\"agent-stand-in\"},\"spans\":[{")
            .append("\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"eee19b7ec3c1b174\",")
            .append("\"name\":\"premain\",\"kind\":1,\"startTimeUnixNano\":\"").append(now)
            .append("\",\"endTimeUnixNano\":\"").append(now).append("\"}]}]}]}");

        String endpoint = System.getenv("OTEL_EXPORTER_OTLP_ENDPOINT");
        if (endpoint == null) {
            endpoint = "http://localhost:4318";
        }
        HttpURLConnection connection = (HttpURLConnection) new URL(endpoint.replaceAll("/+$", "") + "/v1/traces").openConnection();
        connection.setRequestMethod("POST");
        connection.setDoOutput(true);
        connection.setRequestProperty("Content-Type", "application/json");
        byte[] body = json.toString().getBytes(StandardCharsets.UTF_8);
        connection.setFixedLengthStreamingMode(body.length);
        try (OutputStream out = connection.getOutputStream()) {
            out.write(body);
        }
        int status = connection.getResponseCode();
        if (status / 100 != 2) {
            throw new IllegalStateException("OTLP export answered " + status);
        }
    }

    private static String decode(String value) throws Exception {
        return URLDecoder.decode(value.replace("+", "%2B"), "UTF-8");
    }

    private static String quote(String value) {
        StringBuilder quoted = new StringBuilder("\"");
        for (char c : value.toCharArray()) {
            if (c == '"' || c == '\\') {
                quoted.append('\\').append(c);
            } else if (c < 0x20) {
                quoted.append(String.format("\\u%04x", (int) c));
            } else {
                quoted.append(c);
            }
        }
        return quoted.append('"').toString();
    }
}
