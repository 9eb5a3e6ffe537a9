// Many users of ZooKeeper's own Java client in one JVM: N sessions on the same connection
// string, each with its own client (so its own host order and its own random reconnect
// back-off), each writing a sequential znode every 20 ms. It reads commands from its standard
// input, one per line:
//
//   mark   prints "gaps_ms G1 G2 ... GN": each session's longest time between two acknowledged
//          writes since the last mark (a gap still open counts up to now), then starts anew
//   quit   closes every session and exits
//
// Usage: java -cp "$ZOOKEEPER_DIST/lib/*:DIR" Sessions CONNECT_STRING SESSION_TIMEOUT_MS N ROOT

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;

public final class Sessions {
  private static final class Session implements Runnable {
    private final String connect;
    private final int timeoutMs;
    private final String prefix;
    private volatile boolean stop;
    private ZooKeeper zk;
    private long lastAck;
    private long longest;

    Session(String connect, int timeoutMs, String prefix) {
      this.connect = connect;
      this.timeoutMs = timeoutMs;
      this.prefix = prefix;
    }

    void open() throws Exception {
      CountDownLatch connected = new CountDownLatch(1);
      zk = new ZooKeeper(connect, timeoutMs, event -> {
        if (event.getState() == Watcher.Event.KeeperState.SyncConnected) {
          connected.countDown();
        }
      });
      if (!connected.await(timeoutMs, TimeUnit.MILLISECONDS)) {
        throw new IllegalStateException("no session on " + connect + " in " + timeoutMs + " ms");
      }
    }

    synchronized void acked(long now) {
      if (lastAck != 0) {
        longest = Math.max(longest, now - lastAck);
      }
      lastAck = now;
    }

    /** The longest gap since the last call, counting the open one up to now. */
    synchronized long takeLongest(long now) {
      long g = Math.max(longest, lastAck == 0 ? 0 : now - lastAck);
      longest = 0;
      return g;
    }

    @Override
    public void run() {
      try {
        while (!stop) {
          boolean ok = false;
          try {
            zk.create(prefix, new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE,
                CreateMode.PERSISTENT_SEQUENTIAL);
            acked(System.nanoTime());
            ok = true;
          } catch (KeeperException.SessionExpiredException e) {
            zk.close();
            open();
          } catch (KeeperException e) {
            // connection loss: the client reconnects by itself; try again
          }
          Thread.sleep(ok ? 20 : 50);
        }
        zk.close();
      } catch (Exception e) {
        System.err.println("session " + prefix + " stopped: " + e);
      }
    }
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 4) {
      System.err.println("usage: Sessions CONNECT_STRING SESSION_TIMEOUT_MS N ROOT");
      System.exit(2);
    }
    String connect = args[0];
    int timeoutMs = Integer.parseInt(args[1]);
    int n = Integer.parseInt(args[2]);
    String root = args[3];
    List<Session> sessions = new ArrayList<>();
    List<Thread> threads = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      Session s = new Session(connect, timeoutMs, root + "/s" + i + "-");
      s.open();
      if (i == 0) {
        s.zk.create(root, new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
      }
      sessions.add(s);
    }
    for (Session s : sessions) {
      Thread t = new Thread(s);
      t.start();
      threads.add(t);
    }
    System.out.println("ready " + n);
    System.out.flush();
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String line;
    while ((line = in.readLine()) != null) {
      if (line.equals("mark")) {
        long now = System.nanoTime();
        StringBuilder out = new StringBuilder("gaps_ms");
        for (Session s : sessions) {
          out.append(' ').append(TimeUnit.NANOSECONDS.toMillis(s.takeLongest(now)));
        }
        System.out.println(out);
        System.out.flush();
      } else if (line.equals("quit")) {
        break;
      }
    }
    for (Session s : sessions) {
      s.stop = true;
    }
    for (Thread t : threads) {
      t.join(5000);
    }
  }
}
