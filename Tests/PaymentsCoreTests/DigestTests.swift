import Cryptography
import Testing

@Suite struct DigestTests {
    @Test func sha256MatchesKnownVector() {
        #expect(
            Hex.encode(Digest.sha256(Array("abc".utf8)))
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func hmacMatchesRFC4231Case2() {
        let mac = Digest.hmacSHA256(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))
        #expect(Hex.encode(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func constantTimeEqualComparesContentAndLength() {
        #expect(Digest.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!Digest.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!Digest.constantTimeEqual([1, 2, 3], [1, 2]))
        #expect(Digest.constantTimeEqual([UInt8](), [UInt8]()))
    }

    @Test func hexRoundTripsAndRejectsGarbage() {
        #expect(Hex.decode("00ffA0") == [0x00, 0xff, 0xa0])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
        #expect(Hex.encode([0x00, 0xff]) == "00ff")
    }

    @Test func randomBytesDiffer() {
        #expect(Digest.randomBytes(16) != Digest.randomBytes(16))
        #expect(Digest.randomBytes(32).count == 32)
    }
}

@Suite struct SealedBoxTests {
    let key = Digest.sha256(Array("sealing key".utf8))

    @Test func roundTripsAndRefusesTampering() throws {
        let plaintext = Array(#"{"client_secret":"pi_1_secret_2"}"#.utf8)
        let box = SealedBox.seal(plaintext, key: key)
        #expect(box.count == plaintext.count + SealedBox.overhead)
        #expect(!box.indices.dropLast(7).contains { Array(box[$0..<$0 + 7]) == Array("secret_".utf8) })
        #expect(SealedBox.open(box, key: key) == plaintext)
        #expect(SealedBox.seal(plaintext, key: key) != box)  // a fresh nonce each time
        var altered = box
        altered[14] ^= 1
        #expect(SealedBox.open(altered, key: key) == nil)
        #expect(SealedBox.open(box, key: Digest.sha256(Array("other".utf8))) == nil)
        #expect(SealedBox.open(Array(box.prefix(20)), key: key) == nil)
        #expect(SealedBox.open(SealedBox.seal([], key: key), key: key) == [])
    }
}
