// The Java app of the end-to-end test: it only has to start; the agent exports before main.
public final class App {
    private App() {}

    public static void main(String[] args) {
        System.out.println("app started");
    }
}
